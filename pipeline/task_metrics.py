"""Task predictions -> the task's metrics, as `evaluate` modules that run offline.

- classification: accuracy and macro-F1 (scikit-learn's, the mean F1 over every class predicted or present);
- token classification: seqeval's entity-level F1 (micro over entities, conlleval's rules: an entity counts only
  if its type and both ends match), precision, recall, and word accuracy.

They are `evaluate.Metric` subclasses defined here: `evaluate.load("accuracy")` or `("seqeval")` would fetch a
script from the Hub at run time, which fails offline unless it was fetched before. The arithmetic is the
maintained libraries' (scikit-learn, seqeval), the same the Hub scripts call.
"""

import datasets
import evaluate

CLASSIFICATION = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))
TOKENS = (("entity_f1", "entity F1"), ("accuracy", "word accuracy"))


class ClassificationMetrics(evaluate.Metric):
    """Accuracy and macro-F1 of label ids."""

    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy and macro-F1 (scikit-learn).", citation="", inputs_description="label ids",
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        from sklearn.metrics import accuracy_score, f1_score

        return {"accuracy": float(accuracy_score(references, predictions)),
                "macro_f1": float(f1_score(references, predictions, average="macro", zero_division=0))}


class EntityMetrics(evaluate.Metric):
    """seqeval's entity precision, recall and F1, and word accuracy, of BIO tag sequences."""

    def _info(self):
        tags = datasets.Sequence(datasets.Value("string"))
        return evaluate.MetricInfo(
            description="Entity-level precision, recall and F1 (seqeval, conlleval rules); word accuracy.",
            citation="", inputs_description="a list of BIO tags per sentence",
            features=datasets.Features({"predictions": tags, "references": tags}))

    def _compute(self, predictions, references):
        from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

        return {"entity_f1": float(f1_score(references, predictions, zero_division=0)),
                "entity_precision": float(precision_score(references, predictions, zero_division=0)),
                "entity_recall": float(recall_score(references, predictions, zero_division=0)),
                "accuracy": float(accuracy_score(references, predictions))}


def task_metrics(kind: str, predictions: list, references: list, label_names: list[str]) -> dict[str, float]:
    """The metrics of one run: predictions and references are label ids (classification) or lists of tag ids
    (kind "tokens")."""
    if kind == "tokens":
        def names(rows):
            return [[label_names[i] for i in row] for row in rows]

        return EntityMetrics(keep_in_memory=True).compute(predictions=names(predictions),
                                                          references=names(references))
    return ClassificationMetrics(keep_in_memory=True).compute(predictions=predictions, references=references)


def metric_names(kind: str) -> tuple[tuple[str, str], ...]:
    """(key, label) of the metrics a table shows for a task of this kind, the headline first."""
    return TOKENS if kind == "tokens" else CLASSIFICATION
