"""Dropout on a CPU: the mask from lanes of random words, applied as a product.

PyTorch's CPU dropout draws one Bernoulli number at a time from the seeded generator (about 8 ns an element
here), and its boolean masks take a slow path. Here a mask is read from 16-bit (or 8-bit) lanes of 64-bit random
words of the same generator, compared into the input's dtype in one pass, and multiplied: a BERT layer's hidden
dropout, forward and backward, about 3x faster (docs/design.md). Each value is dropped with the probability
rounded to a multiple of 1/65536 (1/256), and the scale 1 / (1 - p) uses that rounded value, so the expectation
is exact.
"""

import math

import torch
from torch import nn

# Lane widths: 16 bits for hidden dropout; 8 for the attention probabilities, the largest masks by far, whose
# random words are then half the work (PyTorch's CUDA flash attention also compares 8-bit numbers)
HIDDEN_BITS, ATTENTION_BITS = 16, 8


def rounded_probability(probability: float, bits: int = HIDDEN_BITS) -> float:
    """The dropout probability a mask of `bits`-bit lanes draws: the nearest multiple of 1 / 2**bits (for p = 0.1:
    0.1000061 at 16 bits, 0.1015625 at 8)."""
    return round(probability * (1 << bits)) / (1 << bits)


def keep_mask(shape: tuple[int, ...], probability: float, dtype: torch.dtype = torch.float32,
              bits: int = HIDDEN_BITS) -> tuple[torch.Tensor, float]:
    """1 where a value is kept and 0 where it is dropped, in `dtype`, from 8- or 16-bit lanes of the seeded
    generator's random words; and the probability drawn, `rounded_probability`."""
    levels = 1 << bits
    threshold = round(probability * levels)
    size = math.prod(shape)
    words = torch.empty(-(-size * bits // 64), dtype=torch.int64).random_(-2 ** 63, 2 ** 63 - 1)
    lanes = words.view(torch.uint8 if bits == 8 else torch.int16)[:size].view(shape)
    signed = 0 if bits == 8 else levels // 2  # int16 lanes run from -32768
    # A comparison written straight into `dtype`: a boolean mask and its product would take the slow paths
    return torch.ge(lanes, threshold - signed, out=torch.empty(shape, dtype=dtype)), threshold / levels


class CpuDropout(nn.Dropout):
    """`nn.Dropout` whose training-mode forward on a CPU is `input * keep_mask / (1 - p)`; elsewhere (evaluation,
    GPUs, torch.compile, in-place or total dropout) nn.Dropout's own."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if (not self.training or not self.p or rounded_probability(self.p) >= 1 or self.inplace
                or input.device.type != "cpu" or torch.compiler.is_compiling()):
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
