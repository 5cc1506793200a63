import math

import pytest
import torch
from transformers import EvalPrediction

from pipeline.heads import HeadSums
from pipeline.metrics import compute_metrics, preprocess_logits_for_metrics


def test_per_head_metrics_from_sparse_logits():
    labels = torch.tensor([[-100, 5, -100, 7], [-100, -100, 2, -100]])
    nsp_labels = torch.tensor([0, 1])
    # Three masked positions in row-major order: 5 (right), 7 (wrong), 2 (right).
    prediction_logits = torch.full((3, 10), -10.0)
    prediction_logits[0, 5] = prediction_logits[1, 3] = prediction_logits[2, 2] = 10.0
    seq_logits = torch.tensor([[5.0, 0.0], [5.0, 0.0]])
    stats = preprocess_logits_for_metrics((prediction_logits, seq_logits), (labels, nsp_labels))
    assert stats.shape == (2, 6)
    rows = HeadSums.from_tensor(stats)
    assert rows.mlm_count.tolist() == [2, 1] and rows.mlm_correct.tolist() == [1, 1]
    assert rows.sentence_count.tolist() == [1, 1] and rows.sentence_correct.tolist() == [1, 0]

    metrics = compute_metrics(EvalPrediction(predictions=stats.numpy(), label_ids=None))
    token_losses = torch.nn.functional.cross_entropy(prediction_logits, torch.tensor([5, 7, 2]), reduction="none")
    assert math.isclose(metrics["mlm_loss"], token_losses.mean().item(), rel_tol=1e-5)
    assert math.isclose(metrics["mlm_accuracy"], 2 / 3)
    assert math.isclose(metrics["perplexity"], math.exp(metrics["mlm_loss"]), rel_tol=1e-6)
    assert metrics["nsp_accuracy"] == 0.5
    nsp = torch.nn.functional.cross_entropy(seq_logits, nsp_labels).item()
    assert math.isclose(metrics["nsp_loss"], nsp, rel_tol=1e-5)


def test_metrics_do_not_depend_on_batching():
    """Rows from batches of 2 and of 6 sum to the same metrics as one batch of 8."""
    torch.manual_seed(0)
    labels = torch.full((8, 12), -100)
    labels[torch.rand(8, 12) < 0.3] = 7
    labels[:, 0] = 3  # every row has masked tokens, in different numbers
    nsp = torch.randint(0, 2, (8,))
    masked = labels != -100
    logits, seq = torch.randn(int(masked.sum()), 10), torch.randn(8, 2)
    whole = preprocess_logits_for_metrics((logits, seq), (labels, nsp))
    split = int(masked[:2].sum())
    parts = torch.cat([preprocess_logits_for_metrics((logits[:split], seq[:2]), (labels[:2], nsp[:2])),
                       preprocess_logits_for_metrics((logits[split:], seq[2:]), (labels[2:], nsp[2:]))])
    one = compute_metrics(EvalPrediction(predictions=whole.numpy(), label_ids=None))
    two = compute_metrics(EvalPrediction(predictions=parts.numpy(), label_ids=None))
    assert one == pytest.approx(two, abs=1e-6)
    # A mean of per-batch means would differ: the two batches have different masked counts.
    first, second = HeadSums.from_tensor(parts[:2]), HeadSums.from_tensor(parts[2:])
    batch_means = (first.mlm_loss_sum.sum() / first.mlm_count.sum()
                   + second.mlm_loss_sum.sum() / second.mlm_count.sum()) / 2
    assert abs(batch_means.item() - one["mlm_loss"]) > 1e-3


def test_mlm_only_rows_have_no_sentence_metrics():
    labels = torch.tensor([[-100, 5, 7]])
    stats = preprocess_logits_for_metrics(torch.zeros(2, 10), labels)
    assert HeadSums.from_tensor(stats).sentence_count.tolist() == [0]
    assert set(compute_metrics(EvalPrediction(predictions=stats.numpy(), label_ids=None))) == {
        "mlm_loss", "mlm_accuracy", "perplexity"}
