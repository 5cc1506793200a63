"""Model outputs -> per-head metrics: MLM loss, accuracy and perplexity; NSP loss and accuracy.

`preprocess_logits_for_metrics` shrinks each batch to a few numbers per example, so
evaluation never holds logits in memory; `compute_metrics` sums them. Sums per
example (not per-batch means) make the result exact whatever the batch size, the
padding, or the number of processes whose predictions Trainer gathers.
The `evaluate` library's metrics are loaded from the Hub at run time, so plain
numpy is used here to stay offline.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

COLUMNS = ("mlm_loss_sum", "mlm_count", "mlm_correct", "nsp_loss", "nsp_correct")


def preprocess_logits_for_metrics(logits, labels) -> torch.Tensor:
    """(prediction_logits at masked positions[, seq_relationship_logits]) -> a (batch, 5) float tensor."""
    logits = logits if isinstance(logits, (tuple, list)) else (logits,)
    prediction_logits = logits[0]
    mlm_labels, nsp_labels = labels if isinstance(labels, (tuple, list)) else (labels, None)
    masked = mlm_labels != -100
    rows = masked.nonzero()[:, 0]
    token_loss = F.cross_entropy(prediction_logits.float(), mlm_labels[masked], reduction="none")
    token_correct = (prediction_logits.argmax(-1) == mlm_labels[masked]).float()
    batch = mlm_labels.shape[0]
    out = torch.zeros(batch, len(COLUMNS), device=mlm_labels.device)
    out[:, 0].index_add_(0, rows, token_loss)
    out[:, 1] = masked.sum(1)
    out[:, 2].index_add_(0, rows, token_correct)
    if nsp_labels is not None:
        nsp_labels = nsp_labels.view(-1)
        out[:, 3] = F.cross_entropy(logits[1].float(), nsp_labels, reduction="none")
        out[:, 4] = (logits[1].argmax(-1) == nsp_labels).float()
    else:
        out[:, 3:] = float("nan")
    return out


def compute_metrics(eval_pred, head: str = "nsp") -> dict[str, float]:
    """Sums the per-example rows; `head` names the sentence-level head ("nsp" or "sop")."""
    stats = np.asarray(eval_pred.predictions, dtype=np.float64).reshape(-1, len(COLUMNS))
    mlm_loss = stats[:, 0].sum() / max(stats[:, 1].sum(), 1)
    metrics = {
        "mlm_loss": float(mlm_loss),
        "mlm_accuracy": float(stats[:, 2].sum() / max(stats[:, 1].sum(), 1)),
        "perplexity": float(math.exp(min(mlm_loss, 50))),
    }
    if not np.isnan(stats[:, 3]).all():
        metrics[f"{head}_loss"] = float(stats[:, 3].mean())
        metrics[f"{head}_accuracy"] = float(stats[:, 4].mean())
    return metrics
