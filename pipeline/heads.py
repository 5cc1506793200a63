"""Model outputs -> per-head sums: the six numbers every loss and metric of the MLM and sentence heads comes from.

The model returns them for each training batch, the trainer adds them up over an optimizer step
and over processes, and evaluation adds them up per example: sums, not means, so the result is
exact whatever the batching, the padding, gradient accumulation or the number of processes.
"""

import math
from dataclasses import dataclass, fields
from typing import Any

import torch


@dataclass(frozen=True)
class HeadSums:
    """Sums over masked tokens (MLM) and over examples (the NSP/SOP head; zeros for MLM only).

    Each field is a number, a 0-d tensor, or one value per example (a column); `to_tensor` stacks
    them in this order along a last axis of size 6, and `from_tensor` reads them back.
    """

    mlm_loss_sum: Any
    mlm_count: Any
    mlm_correct: Any
    sentence_loss_sum: Any = 0.0
    sentence_count: Any = 0.0
    sentence_correct: Any = 0.0

    def values(self) -> list:
        """The six sums in field order (not `dataclasses.astuple`, which deep-copies tensors out of the graph)."""
        return [getattr(self, f.name) for f in fields(self)]

    def to_tensor(self) -> torch.Tensor:
        """The sums as float32, stacked along a new last axis."""
        first = torch.as_tensor(self.mlm_loss_sum)
        return torch.stack([torch.as_tensor(value, device=first.device).float() for value in self.values()], dim=-1)

    @classmethod
    def from_tensor(cls, sums) -> "HeadSums":
        """From a tensor or array whose last axis holds the six sums (rows of examples, or one step's)."""
        if sums.shape[-1] != len(fields(cls)):
            raise ValueError(f"head sums have {len(fields(cls))} values, not {sums.shape[-1]}")
        return cls(*(sums[..., i] for i in range(len(fields(cls)))))

    def total(self) -> "HeadSums":
        """Column sums of per-example rows (each summed on its own, as numpy sums a column: pairwise)."""
        return HeadSums(*(value.sum() for value in self.values()))

    def metrics(self, head: str = "nsp") -> dict[str, float]:
        """Means: MLM loss, accuracy and perplexity over masked tokens; `head`'s loss and accuracy over examples."""
        mlm_loss = float(self.mlm_loss_sum) / max(float(self.mlm_count), 1)
        metrics = {"mlm_loss": mlm_loss, "mlm_accuracy": float(self.mlm_correct) / max(float(self.mlm_count), 1),
                   "perplexity": math.exp(min(mlm_loss, 50))}
        if float(self.sentence_count) > 0:
            metrics[f"{head}_loss"] = float(self.sentence_loss_sum) / float(self.sentence_count)
            metrics[f"{head}_accuracy"] = float(self.sentence_correct) / float(self.sentence_count)
        return metrics
