"""Dropout on a CPU: the mask from 16-bit lanes of random words, applied as a product.

PyTorch's CPU dropout draws one Bernoulli number at a time from the seeded generator (about 8 ns an element
here), and its boolean masks take a slow path. Here a mask is read four 16-bit lanes at a time from 64-bit
random words of the same generator, compared into the input's dtype in one pass, and multiplied: a BERT
layer's hidden dropout, forward and backward, about 3x faster (docs/design.md). Each value is dropped with
the probability rounded to a multiple of 1/65536, and the scale 1 / (1 - p) uses that rounded value.
"""

import math

import torch
from torch import nn

LANES = 1 << 16  # values of a 16-bit lane: dropout probabilities are multiples of 1/65536


def keep_mask(shape: tuple[int, ...], probability: float, dtype: torch.dtype = torch.float32
              ) -> tuple[torch.Tensor, float]:
    """1 where a value is kept and 0 where it is dropped, in `dtype`; each is dropped with `probability` rounded
    to a multiple of 1/65536, which is returned (for p = 0.1: 0.1000061)."""
    threshold = round(probability * LANES)
    size = math.prod(shape)
    words = torch.empty((size + 3) // 4, dtype=torch.int64).random_(-2 ** 63, 2 ** 63 - 1)
    lanes = words.view(torch.int16)[:size].view(shape)
    # A comparison written straight into `dtype`: a boolean mask and its cast would be two slower passes
    return torch.ge(lanes, threshold - LANES // 2, out=torch.empty(shape, dtype=dtype)), threshold / LANES


class CpuDropout(nn.Dropout):
    """`nn.Dropout` whose training-mode forward on a CPU is `input * keep_mask / (1 - p)`; elsewhere (evaluation,
    GPUs, torch.compile, in-place or total dropout) nn.Dropout's own."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if (not self.training or not 0 < self.p < 1 or self.inplace or input.device.type != "cpu"
                or torch.compiler.is_compiling()):
            return super().forward(input)
        keep, dropped = keep_mask(input.shape, self.p, input.dtype)
        # autograd keeps only `keep` for the backward: the gradient is grad * keep, one product
        return input * keep.mul_(1 / (1 - dropped))


def use_cpu_dropout(model: nn.Module, device: torch.device) -> int:
    """Makes each `nn.Dropout` of a model that trains on a CPU a `CpuDropout`; returns how many. Dropout holds no
    weights, so nothing saved changes."""
    if device.type != "cpu":
        return 0
    swapped = 0
    for module in model.modules():
        if type(module) is nn.Dropout and module.p > 0:
            module.__class__ = CpuDropout
            swapped += 1
    return swapped
