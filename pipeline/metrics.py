"""Model outputs -> per-head metrics: MLM loss, accuracy and perplexity; NSP loss and accuracy.

`preprocess_logits_for_metrics` shrinks each batch to a few numbers per example, so
evaluation never holds logits in memory; `compute_metrics` sums them. Sums per
example (not per-batch means) make the result exact whatever the batch size, the
padding, or the number of processes whose predictions Trainer gathers.
The `evaluate` library's metrics are loaded from the Hub at run time, so plain
numpy is used here to stay offline.
"""

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.heads import HeadSums


def preprocess_logits_for_metrics(logits, labels) -> torch.Tensor:
    """(prediction_logits at masked positions[, seq_relationship_logits]) -> per-example `HeadSums` rows, (batch, 6)."""
    logits = logits if isinstance(logits, (tuple, list)) else (logits,)
    prediction_logits = logits[0]
    mlm_labels, nsp_labels = labels if isinstance(labels, (tuple, list)) else (labels, None)
    masked = mlm_labels != -100
    rows = masked.nonzero()[:, 0]
    token_loss = F.cross_entropy(prediction_logits.float(), mlm_labels[masked], reduction="none")
    token_correct = (prediction_logits.argmax(-1) == mlm_labels[masked]).float()
    batch = mlm_labels.shape[0]
    zeros = torch.zeros(batch, device=mlm_labels.device)
    sums = HeadSums(mlm_loss_sum=zeros.index_add(0, rows, token_loss), mlm_count=masked.sum(1),
                    mlm_correct=zeros.index_add(0, rows, token_correct), sentence_loss_sum=zeros,
                    sentence_count=zeros, sentence_correct=zeros)
    if nsp_labels is not None:
        nsp_labels = nsp_labels.view(-1)
        sums = dataclasses.replace(
            sums, sentence_loss_sum=F.cross_entropy(logits[1].float(), nsp_labels, reduction="none"),
            sentence_count=torch.ones(batch, device=mlm_labels.device),
            sentence_correct=(logits[1].argmax(-1) == nsp_labels).float())
    return sums.to_tensor()


def compute_metrics(eval_pred, head: str = "nsp") -> dict[str, float]:
    """Sums the per-example rows; `head` names the sentence-level head ("nsp" or "sop")."""
    rows = np.asarray(eval_pred.predictions, dtype=np.float64).reshape(-1, len(dataclasses.fields(HeadSums)))
    return HeadSums.from_tensor(rows).total().metrics(head)
