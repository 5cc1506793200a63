import pytest
import torch
import torch.nn.functional as F

import pipeline.cross_entropy as cross_entropy
from pipeline.cross_entropy import masked_token_sums


def stock_sums(logits, targets):
    values = logits.float()
    return (F.cross_entropy(values, targets, reduction="sum"), (targets != -100).sum(),
            (values.argmax(-1) == targets).sum())


def example(rows, vocabulary, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(rows, vocabulary, generator=generator) * 4).to(dtype)
    targets = torch.randint(0, vocabulary, (rows,), generator=generator)
    targets[::5] = -100
    # rows the argmax predicts, one of them with its maximum tied at two indices (the first counts)
    logits[1, targets[1]] = logits[1].max() + 1
    logits[2, targets[2]] = logits[2].max() + 1
    logits[2, -1] = logits[2, targets[2]]
    return logits, targets


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk_values", [7 * 1000, 1 << 19, 1])  # several chunks, one, one row per chunk
def test_the_stock_loss_gradient_and_correct_count(monkeypatch, dtype, chunk_values):
    monkeypatch.setattr(cross_entropy, "CHUNK_VALUES", chunk_values)
    logits, targets = example(67, 1000, dtype)
    ours_input, stock_input = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss, count, correct = masked_token_sums(ours_input, targets)
    stock_loss, stock_count, stock_correct = stock_sums(stock_input, targets)
    assert (count, correct) == (stock_count, stock_correct) and int(correct) >= 2
    torch.testing.assert_close(loss, stock_loss, rtol=1e-6, atol=0)
    (loss * 0.5).backward()
    (stock_loss * 0.5).backward()
    assert ours_input.grad.dtype == dtype
    torch.testing.assert_close(ours_input.grad, stock_input.grad, rtol=1e-5 if dtype == torch.float32 else 0.01,
                               atol=1e-7)
    assert not ours_input.grad[targets == -100].any()  # rows that count for nothing get no gradient


def test_the_first_index_wins_a_tie():
    logits = torch.zeros(2, 5)
    logits[:, 1] = logits[:, 3] = 1.0
    _, _, correct = masked_token_sums(logits, torch.tensor([1, 3]))
    assert int(correct) == 1


def test_no_counting_rows():
    logits = torch.randn(3, 10, requires_grad=True)
    loss, count, correct = masked_token_sums(logits, torch.full((3,), -100))
    loss.backward()
    assert (float(loss.detach()), int(count), int(correct)) == (0.0, 0, 0) and not logits.grad.any()


def test_in_a_model_loss_with_autocast():
    # bf16 logits from an autocast matmul, the loss divided as the model divides it
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(40, 16, generator=generator)
    weight = torch.randn(300, 16, generator=generator, requires_grad=True)
    targets = torch.randint(0, 300, (40,), generator=generator)
    grads = []
    for sums in (masked_token_sums, stock_sums):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = hidden @ weight.T
            loss_sum, count, _ = sums(logits, targets)
        (loss_sum / count).backward()
        grads.append(weight.grad.clone())
        weight.grad = None
    torch.testing.assert_close(grads[0], grads[1], rtol=0.01, atol=1e-4)
