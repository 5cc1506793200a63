"""The package's shape: no step imports a later step of the data flow, and argument objects stop at the entry point."""

import ast
import os

from tests.conftest import ROOT

# The data flow, in order: text -> documents -> (the tokenizer) -> sentences -> pairs -> features -> prepared data ->
# batches -> model outputs -> Trainer -> checkpoint (and the output_dir lock) -> the user's task and the
# fine-tuned comparison on it -> report -> the final save; then the
# arguments, the composition layer that turns them into objects, and the commands. errors and cache serve every step.
STEPS = ["errors", "cache", "corpus", "fertility", "wordpiece", "vocabulary", "sentences", "encoding", "pairs",
         "features", "stats", "prepare", "collator", "heads", "families", "model", "metrics", "sampler", "trainer",
         "checkpoints", "lock", "probes", "task", "task_metrics", "finetune", "report", "final_save", "inspection", "arguments",
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
