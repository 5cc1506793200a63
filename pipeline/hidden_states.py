"""A model about to train under bf16 autocast -> the same model with its hidden states in bf16, on a CPU and a GPU.

Autocast computes a linear layer in bf16 but leaves what it is given in its dtype, and CUDA's autocast runs every
layer norm in float32 whatever it is given. So an encoder whose embeddings are float32 keeps its residual stream,
layer norms, dropouts, bias gradients and residual gradients in float32 (each pass moving twice the bytes), and
casts each layer's input to bf16 again for every projection that reads it (the query, key and value projections
each cast the same tensor), and every gradient back. Here the embeddings' output is cast to bf16 once, and each
layer norm reads and writes bf16 (its mean and variance still accumulated in float32, as PyTorch's kernels do for
bf16), so the whole stream stays bf16 as in a model trained in bf16 weights, while the weights, the optimizer and
every loss stay float32. Measured: a step 1.2-1.5x as fast on a CPU at 128 tokens, 1.12-1.16x on an H200
(BERT-base, 128 and 512 tokens), the same losses (docs/design.md, docs/benchmarks.md). Not under fp16 (its narrow
range wants the float32 stream and a loss scale), not outside autocast, and nothing is saved differently.
"""

import torch
import torch.nn.functional as F
from torch import nn

DEVICE_TYPES = ("cpu", "cuda")


def keep_hidden_states_in_bf16(model: nn.Module) -> bool:
    """Hooks the encoder's embeddings (`base_model.embeddings`, every family's name) so that under bf16 autocast
    their output is bf16, and makes each plain `nn.LayerNorm` a `Bf16LayerNorm`; True if the model has
    embeddings there. Asked again, it changes nothing more."""
    embeddings = getattr(model.base_model, "embeddings", None)
    if not isinstance(embeddings, nn.Module):
        return False
    if not getattr(embeddings, "_hidden_states_in_bf16", False):  # one hook, however often it is asked
        embeddings.register_forward_hook(_to_bf16_under_autocast)
        embeddings._hidden_states_in_bf16 = True
    for module in model.modules():
        if type(module) is nn.LayerNorm:  # a family's own norm class keeps its own forward
            module.__class__ = Bf16LayerNorm
    return True


def bf16_autocast(device_type: str) -> bool:
    """Whether bf16 autocast is on for this device type (a CPU or a CUDA GPU)."""
    return (device_type in DEVICE_TYPES and torch.is_autocast_enabled(device_type)
            and torch.get_autocast_dtype(device_type) == torch.bfloat16)


def _to_bf16_under_autocast(module, args, output):
    if isinstance(output, torch.Tensor) and output.is_floating_point() and bf16_autocast(output.device.type):
        return output.to(torch.bfloat16)
    return None


class Bf16LayerNorm(nn.LayerNorm):
    """`nn.LayerNorm` that under bf16 autocast returns bf16: computed in bf16 from a bf16 input (statistics in
    float32 inside the kernel), in float32 from a float32 one and then cast. Elsewhere nn.LayerNorm's own."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not bf16_autocast(input.device.type):
            return super().forward(input)
        weight, bias = self.weight, self.bias
        if input.device.type != "cpu":  # a CPU's kernel takes float32 weights with a bf16 input, CUDA's wants one dtype
            weight, bias = (w.to(input.dtype) if w is not None else None for w in (weight, bias))
        with torch.autocast(input.device.type, enabled=False):
            output = F.layer_norm(input, self.normalized_shape, weight, bias, self.eps)
        return output.to(torch.bfloat16)


def hidden_states_dtype(kept: bool, mixed_precision: str) -> str:
    """The dtype the encoder's hidden states train in, for the report: bf16 where they are kept in it, else the
    embeddings' float32."""
    return "bfloat16" if kept and mixed_precision == "bf16" else "float32"
