"""A model about to run on a CPU -> the same model on this package's CPU paths: dropout from random lanes
(`pipeline.dropout`), attention with dropout in cache-sized blocks (`pipeline.attention`), and under bf16 autocast
hidden states kept in bf16 from the embeddings on.

Autocast computes a linear layer in bf16 but leaves what it is given in its dtype: an encoder whose embeddings
are float32 keeps its residual stream, layer norms and dropouts in float32 (each pass moving twice the bytes), and
casts each layer's input to bf16 again for every projection that reads it (the query, key and value projections
each cast the same tensor), and every gradient back. With the embeddings' output in bf16 the whole stream stays
bf16, as a model trained in bf16 weights would run, while the weights, the optimizer and every loss stay float32:
a step at 128 tokens 1.2-1.5x as fast, the same held-out losses (docs/design.md). CUDA's autocast runs layer norms
in float32 whatever they are given, so there this would save nothing: GPUs keep PyTorch's own paths. Nothing here
is saved with the model.
"""

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.attention import use_cpu_dropout_attention
from pipeline.dropout import use_cpu_dropout
from pipeline.model import attention_dropout_of


@dataclass(frozen=True)
class CpuPaths:
    """What `use_cpu_paths` changed: dropout modules swapped, attention routed, hidden states kept in bf16."""

    dropouts: int = 0
    attention: bool = False
    hidden_states: bool = False


def use_cpu_paths(model: nn.Module, device: torch.device) -> CpuPaths:
    """Puts a model that runs on a CPU on the CPU paths (none elsewhere); says which it took."""
    if device.type != "cpu":
        return CpuPaths()
    return CpuPaths(use_cpu_dropout(model, device),
                    use_cpu_dropout_attention(model, device, attention_dropout_of(model)),
                    keep_hidden_states_in_bf16(model))


def keep_hidden_states_in_bf16(model: nn.Module) -> bool:
    """Hooks the encoder's embeddings (`base_model.embeddings`, every family's name) so that under CPU bf16 autocast
    their output, and so every hidden state after it, is bf16; True if the model has them. (Not under fp16: its
    narrow range wants the float32 stream and a loss scale.)"""
    embeddings = getattr(model.base_model, "embeddings", None)
    if not isinstance(embeddings, nn.Module):
        return False
    if not getattr(embeddings, "_hidden_states_in_bf16", False):  # one hook, however often it is asked
        embeddings.register_forward_hook(_to_bf16_under_autocast)
        embeddings._hidden_states_in_bf16 = True
    return True


def _to_bf16_under_autocast(module, args, output):
    if isinstance(output, torch.Tensor) and output.is_floating_point() and output.device.type == "cpu" \
            and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16:
        return output.to(torch.bfloat16)
    return None


def hidden_states_dtype(paths: CpuPaths, mixed_precision: str) -> str:
    """The dtype the encoder's hidden states train in, for the report: bf16 where they are kept in it, else the
    embeddings' float32."""
    return "bfloat16" if paths.hidden_states and mixed_precision == "bf16" else "float32"
