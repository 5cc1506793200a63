"""pipeline/finetune.py: two checkpoints fine-tuned the same way on a task; metrics exact, runs reproducible by seed."""

import json

import pytest

from pipeline.errors import UsageError
from pipeline.finetune import Budget, classification_metrics, format_task, probe_task, summarize
from pipeline.task import load_task
from tests.conftest import domain_documents, make_documents


@pytest.fixture
def source_task(tmp_path):
    """Which source a text comes from: general generated prose, or the domain's (words the tiny vocabulary splits)."""
    rows = [{"text": t, "label": "general"} for t in make_documents(30, seed=3, max_sentences=2)]
    rows += [{"text": t, "label": "domain"} for t in domain_documents(30, seed=4)]
    path = tmp_path / "task.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return load_task(str(path), seed=0)


def test_metrics_are_exact():
    assert classification_metrics([0, 0, 1, 2], [0, 1, 1, 1], 3) == {"accuracy": 0.5, "macro_f1": (2 / 3 + 2 / 4 + 0) / 3}
    assert summarize([{"accuracy": 0.5}, {"accuracy": 0.7}]) == {
        "accuracy": {"mean": 0.6, "std": pytest.approx(0.1414, abs=1e-4), "values": [0.5, 0.7]}}


def test_quick_probe_learns_the_task_and_repeats_by_seed(source_task, tiny_model_dir):
    models = {"baseline": tiny_model_dir, "adapted": tiny_model_dir}
    first = probe_task(source_task, models, Budget(seeds=2), seed=5, progress=False)
    again = probe_task(source_task, models, Budget(seeds=2), seed=5, progress=False)
    other = probe_task(source_task, models, Budget(seeds=2, epochs=3), seed=9, progress=False)
    for result in (first, again):
        for model in result["models"].values():
            model.pop("seconds")
    assert first == again and first["seeds"] == [5, 6] and first["examples"] == {"train": 48, "test": 12}
    assert first["models"]["baseline"]["accuracy"]["mean"] > 0.75  # the domain's words tell the sources apart
    assert other["seeds"] == [9, 10] and other["budget"]["epochs"] == 3
    table = format_task(other)
    assert "accuracy" in table and "macro-F1" in table and "±" in table


def test_full_fine_tuning_repeats_by_seed(source_task, tiny_model_dir):
    budget = Budget(mode="full", seeds=1, epochs=1, learning_rate=1.0e-3)
    first = probe_task(source_task, {"adapted": tiny_model_dir}, budget, progress=False)["models"]["adapted"]
    again = probe_task(source_task, {"adapted": tiny_model_dir}, budget, progress=False)["models"]["adapted"]
    assert first["accuracy"] == again["accuracy"] and first["macro_f1"] == again["macro_f1"]


def test_bad_budget_is_refused():
    with pytest.raises(UsageError, match="task_mode"):
        Budget(mode="slow")
    with pytest.raises(UsageError, match="task_seeds is 0"):
        Budget(seeds=0)
