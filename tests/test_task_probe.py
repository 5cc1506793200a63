"""pipeline/task_probe.py and train's task_file: the `probe` command and the probe at the end of `train`, with
their results in report.json, report.png and the model card's model-index."""

import json
import os

import pytest
from huggingface_hub import ModelCard

from pipeline.__main__ import main as cli
from tests.conftest import FAST_TRAIN, source_rows, tag_rows, write_jsonl

pytestmark = pytest.mark.train  # each test runs a command end to end


@pytest.fixture
def task_file(tmp_path):
    """Which source a text comes from: general generated prose, or the domain corpus's."""
    return write_jsonl(tmp_path / "task.jsonl", source_rows(20))


def test_probe_command_compares_two_checkpoints(tiny_model_dir, task_file, tmp_path, capsys):
    out = tmp_path / "probe"
    assert cli(["probe", "--task_file", task_file, "--model_name_or_path", tiny_model_dir, "--baseline_model",
                tiny_model_dir, "--task_seeds", "2", "--output_dir", str(out), "--disable_tqdm", "true"]) == 0
    printed = capsys.readouterr().out
    assert "Task probe: task.jsonl (quick" in printed and "baseline" in printed and "adapted" in printed
    result = json.load(open(out / "task_probe.json"))
    assert result["seeds"] == [42, 43] and len(result["models"]["adapted"]["accuracy"]["values"]) == 2
    assert (out / "task_probe.png").read_bytes().startswith(b"\x89PNG")


def test_probe_refuses_bad_input_in_one_sentence(tiny_model_dir, tmp_path, capsys):
    assert cli(["probe", "--model_name_or_path", tiny_model_dir]) == 2
    assert "--task_file" in capsys.readouterr().err
    bad = tmp_path / "one.jsonl"
    bad.write_text("".join(json.dumps({"text": f"t{i}", "label": "x"}) + "\n" for i in range(10)))
    assert cli(["probe", "--task_file", str(bad), "--model_name_or_path", tiny_model_dir]) == 2
    err = capsys.readouterr().err
    assert "one class only" in err and len(err.strip().splitlines()) == 1


def test_train_ends_with_the_task_probe(tiny_model_dir, domain_corpus, task_file, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli(["train", "--model_name_or_path", tiny_model_dir, "--train_file", domain_corpus, "--output_dir", out,
                "--max_seq_length", "64", "--max_steps", "2", "--validation_split_percentage", "10",
                "--task_file", task_file, "--task_seeds", "2", *FAST_TRAIN]) == 0
    assert "Task probe: task.jsonl" in capsys.readouterr().out
    task = json.load(open(os.path.join(out, "report.json")))["task"]
    assert set(task["models"]) == {"baseline", "adapted"} and task["models"]["adapted"]["model"] == out
    results = ModelCard.load(os.path.join(out, "README.md")).data.eval_results
    probed = [r for r in results if r.dataset_name == "task.jsonl"]
    assert [r.metric_type for r in probed] == ["accuracy", "f1"]
    assert probed[0].metric_value == task["models"]["adapted"]["accuracy"]["mean"]


def test_probe_tags_task_from_a_recipe_output_dir(tiny_model_dir, tmp_path, capsys):
    """A tags column makes it token classification; an output_dir set only in the recipe is where results go."""
    path = write_jsonl(tmp_path / "tags.jsonl", tag_rows(40))
    out = tmp_path / "from-recipe"
    recipe = tmp_path / "probe.yaml"
    recipe.write_text(f"model_name_or_path: {tiny_model_dir}\noutput_dir: {out}\ntask_file: {path}\n"
                      "task_text_column: tokens\ntask_tags_column: tags\n")
    assert cli(["probe", "--config", str(recipe), "--baseline_model", tiny_model_dir, "--task_seeds", "1",
                "--disable_tqdm", "true"]) == 0
    printed = capsys.readouterr().out
    assert "token classification, 2 entity types (PLACE, TERM)" in printed and "entity F1" in printed
    result = json.load(open(out / "task_probe.json"))
    assert result["kind"] == "tokens" and result["labels"] == ["O", "B-PLACE", "I-PLACE", "B-TERM"]
