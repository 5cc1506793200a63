"""pipeline/task_metrics.py: the task metrics are evaluate modules that run offline, with the libraries' numbers."""

import pytest

from pipeline.task_metrics import ClassificationMetrics, EntityMetrics, task_metrics


def test_classification_is_accuracy_and_macro_f1():
    # class 0: tp 1 (F1 2/3); class 1: tp 1 of 3 actual, 1 predicted (F1 2/4); class 2: predicted, absent (F1 0)
    assert task_metrics("classification", [0, 0, 1, 2], [0, 1, 1, 1], ["a", "b", "c"]) == {
        "accuracy": 0.5, "macro_f1": pytest.approx((2 / 3 + 2 / 4 + 0) / 3)}


def test_entities_count_whole_spans_only():
    names = ["O", "B-PER", "I-PER", "B-LOC"]
    references = [[1, 2, 0, 3], [0, 3]]  # PER (two words), LOC; LOC
    predictions = [[1, 0, 0, 3], [0, 3]]  # PER cut short: wrong; both LOC right
    scores = task_metrics("tokens", predictions, references, names)
    assert scores["entity_precision"] == pytest.approx(2 / 3) and scores["entity_recall"] == pytest.approx(2 / 3)
    assert scores["entity_f1"] == pytest.approx(2 / 3) and scores["accuracy"] == pytest.approx(5 / 6)


def test_modules_are_evaluate_metrics_offline(monkeypatch):
    import evaluate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for module in (ClassificationMetrics, EntityMetrics):
        assert isinstance(module(keep_in_memory=True), evaluate.Metric)
    metric = ClassificationMetrics(keep_in_memory=True)
    metric.add_batch(predictions=[1, 1], references=[1, 0])
    assert metric.compute()["accuracy"] == 0.5  # the incremental API works too
