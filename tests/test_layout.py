"""The package's shape: no step imports a later step of the data flow, argument objects stop at the entry point, and
the data commands never import the training code."""

import ast
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# The data flow, in order: text -> documents -> (the tokenizer) -> sentences -> pairs -> features -> prepared data ->
# batches -> model outputs -> Trainer -> checkpoint (and the output_dir lock) -> the user's task and the
# fine-tuned comparison on it -> report -> the final save; then the
# arguments, the composition layer that turns them into objects, and the commands. errors and cache serve every step.
STEPS = ["errors", "cache", "corpus", "tokenizer", "fertility", "wordpiece", "vocabulary", "sentences", "encoding",
         "pairs", "features", "stats", "prepare", "collator", "heads", "cross_entropy", "families", "model", "dropout",
         "attention", "hidden_states", "fast_paths", "metrics", "sampler", "optimizer", "trainer", "checkpoints",
         "lock", "probes", "task", "task_metrics", "finetune", "report", "final_save", "inspection", "arguments",
         "build", "train", "evaluation", "task_probe", "reference", "__main__"]
# The composition layer and the commands: the only modules that see the argument dataclasses.
ENTRY = {"build", "train", "evaluation", "task_probe", "reference", "__main__"}


def imports(module: str) -> set[str]:
    """The pipeline modules a module imports, at the top or inside a function."""
    tree = ast.parse(open(os.path.join(ROOT, "pipeline", f"{module}.py"), encoding="utf-8").read())
    found = set()
    for node in ast.walk(tree):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found |= {n.split(".")[1] for n in names if n.startswith("pipeline.")}
    return found


def test_every_module_has_its_place_in_the_flow():
    modules = {name[:-3] for name in os.listdir(os.path.join(ROOT, "pipeline")) if name.endswith(".py")}
    assert modules - {"__init__"} == set(STEPS)


def test_no_step_imports_a_later_step():
    later = {module: [m for m in imports(module) if STEPS.index(m) > STEPS.index(module)] for module in STEPS}
    assert {module: found for module, found in later.items() if found} == {}


def test_argument_objects_stop_at_the_entry_point():
    assert {module for module in STEPS if "arguments" in imports(module)} <= ENTRY


# What only training needs: about a second of imports that `prepare`, `inspect` and `vocab` would pay at every start.
# (Not torch or transformers.modeling_utils: AutoTokenizer and TrainingArguments import them.)
TRAINING_ONLY = ["transformers.trainer", "transformers.models.bert.modeling_bert", "evaluate", "sklearn",
                 "pipeline.model", "pipeline.cross_entropy", "pipeline.dropout", "pipeline.attention",
                 "pipeline.hidden_states", "pipeline.fast_paths", "pipeline.optimizer", "pipeline.trainer",
                 "pipeline.metrics", "pipeline.finetune", "pipeline.task"]
# Runs the three data commands in one fresh interpreter (the test's own has imported everything) and prints which
# of TRAINING_ONLY they loaded.
RUN_DATA_COMMANDS = """
import json, sys
from pipeline.__main__ import main
training_only, common = json.loads(sys.argv[1]), sys.argv[2:]
codes = [main(["prepare", *common]), main(["inspect", *common, "--num_examples", "1"]), main(["vocab", *common])]
print(json.dumps({"codes": codes, "loaded": [m for m in training_only if m in sys.modules]}))
"""


@pytest.mark.slow
def test_data_commands_import_no_training_code(tiny_model_dir, corpus_file, tmp_path, subprocess_env):
    common = ["--model_name_or_path", tiny_model_dir, "--train_file", str(corpus_file), "--max_seq_length", "64",
              "--output_dir", str(tmp_path / "out"), "--report_to", "none"]
    result = subprocess.run([sys.executable, "-c", RUN_DATA_COMMANDS, json.dumps(TRAINING_ONLY), *common],
                            capture_output=True, text=True, env=subprocess_env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"codes": [0, 0, 0], "loaded": []}
