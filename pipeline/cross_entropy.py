"""MLM logits and targets -> the loss sum, the targets and the correct predictions, a cache-sized chunk of rows at
a time.

The stock way, `F.cross_entropy(logits.float(), targets)` and an argmax, passes through memory again and again over
a (masked tokens, vocabulary) matrix: 1,280 x 30,522 at batch 16 and 512 tokens, 156 MB in fp32, copied from bf16,
log-softmaxed into another, zero-filled and scattered for the backward, then cast back. On a CPU each pass is
memory-bound, and together they took a fifth of a bf16 training step (docs/design.md). Here the fp32 values of a
few rows at a time stay in a core's cache: the forward keeps only each row's log-sum-exp, and the backward
recomputes softmax minus one-hot from the logits. The same float32 math, so the same loss and gradient; GPUs keep
the stock path, whose kernels already fuse these passes.
"""

import torch
import torch.nn.functional as F

CHUNK_VALUES = 1 << 19  # fp32 logits per chunk: 2 MB, about a core's L2 cache
IGNORE_INDEX = -100  # a target that counts for nothing (F.cross_entropy's default)


def masked_token_sums(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy summed over the rows whose target is not -100, computed in float32; the number of those rows;
    and how many of them the argmax (first index on ties) predicts.

    Args:
        logits: (rows, vocabulary), any float dtype.
        targets: (rows,) class indices, -100 where a row counts for nothing.
    """
    count = (targets != IGNORE_INDEX).sum()
    if logits.device.type != "cpu" or torch.compiler.is_compiling():
        values = logits.float()
        return (F.cross_entropy(values, targets, reduction="sum", ignore_index=IGNORE_INDEX), count,
                (values.detach().argmax(-1) == targets).sum())
    loss, correct = _ChunkedCrossEntropy.apply(logits, targets)
    return loss, count, correct


def _float32_chunks(logits: torch.Tensor, rows: int):
    """(slice, those rows of the logits in float32) for each block of `rows` rows, in one buffer reused in cache."""
    buffer = torch.empty(min(rows, logits.shape[0]), logits.shape[1], dtype=torch.float32)
    for start in range(0, logits.shape[0], rows):
        part = slice(start, start + rows)
        yield part, buffer[:len(logits[part])].copy_(logits[part])


class _ChunkedCrossEntropy(torch.autograd.Function):
    """(logits, targets) -> (loss sum, correct), with the fp32 work on `CHUNK_VALUES`-sized blocks of rows."""

    @staticmethod
    def forward(ctx, logits, targets):
        rows = max(1, CHUNK_VALUES // max(1, logits.shape[1]))
        valid = targets != IGNORE_INDEX
        safe = torch.where(valid, targets, 0)
        log_sum_exp = torch.empty(logits.shape[0], dtype=torch.float32)
        predicted = torch.empty(logits.shape[0], dtype=torch.long)
        for part, values in _float32_chunks(logits, rows):
            top, predicted[part] = values.max(-1)  # max's index is the first on ties, as argmax's
            log_sum_exp[part] = values.sub_(top[:, None]).exp_().sum(-1).log_().add_(top)
        picked = logits.gather(1, safe[:, None]).squeeze(1).float()
        ctx.save_for_backward(logits, log_sum_exp, safe, valid)
        ctx.rows = rows
        loss = torch.where(valid, log_sum_exp - picked, 0.0).sum()
        return loss, (valid & (predicted == targets)).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, grad_correct):
        logits, log_sum_exp, safe, valid = ctx.saved_tensors
        # d(loss)/d(logits) = (softmax - one-hot) * grad on the rows that count, 0 elsewhere
        weight = valid.float() * grad_loss.float()
        grad = torch.empty_like(logits)
        for part, values in _float32_chunks(logits, ctx.rows):
            values.sub_(log_sum_exp[part, None]).exp_().mul_(weight[part, None])
            values.scatter_add_(1, safe[part, None], -weight[part, None])
            grad[part] = values
        return grad, None
