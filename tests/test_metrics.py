import math

import numpy as np
import torch
from transformers import EvalPrediction

from pipeline.metrics import compute_metrics, preprocess_logits_for_metrics


def test_per_head_metrics_from_sparse_logits():
    labels = torch.tensor([[-100, 5, -100, 7], [-100, -100, 2, -100]])
    nsp_labels = torch.tensor([0, 1])
    # Three masked positions in row-major order: 5 (right), 7 (wrong), 2 (right).
    prediction_logits = torch.full((3, 10), -10.0)
    prediction_logits[0, 5] = prediction_logits[1, 3] = prediction_logits[2, 2] = 10.0
    seq_logits = torch.tensor([[5.0, 0.0], [5.0, 0.0]])
    stats = preprocess_logits_for_metrics((prediction_logits, seq_logits), (labels, nsp_labels))
    assert stats.shape == (2, 5)
    assert stats[:, 1].tolist() == [2, 1] and stats[:, 2].tolist() == [1, 1]

    metrics = compute_metrics(EvalPrediction(predictions=stats.numpy(), label_ids=None))
    token_losses = torch.nn.functional.cross_entropy(prediction_logits, torch.tensor([5, 7, 2]), reduction="none")
    assert math.isclose(metrics["mlm_loss"], token_losses.mean().item(), rel_tol=1e-5)
    assert math.isclose(metrics["mlm_accuracy"], 2 / 3)
    assert math.isclose(metrics["perplexity"], math.exp(metrics["mlm_loss"]), rel_tol=1e-6)
    assert metrics["nsp_accuracy"] == 0.5
    nsp = torch.nn.functional.cross_entropy(seq_logits, nsp_labels).item()
    assert math.isclose(metrics["nsp_loss"], nsp, rel_tol=1e-5)


def test_metrics_do_not_depend_on_batching():
    rng = np.random.default_rng(0)
    stats = np.column_stack([rng.random(10) * 5, rng.integers(1, 6, 10), rng.integers(0, 2, 10),
                             rng.random(10), rng.integers(0, 2, 10)])
    whole = compute_metrics(EvalPrediction(predictions=stats, label_ids=None))
    # Trainer concatenates batches: the per-example rows are all that matters.
    assert whole == compute_metrics(EvalPrediction(predictions=np.concatenate([stats[:3], stats[3:]]), label_ids=None))
