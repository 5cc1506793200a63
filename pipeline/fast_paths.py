"""A model about to run on a device -> the same model on this package's faster paths there: on a CPU, dropout
from random lanes (`pipeline.dropout`) and attention with dropout in cache-sized blocks (`pipeline.attention`); on
a CUDA GPU, attention without cuDNN's per-shape plans (`pipeline.attention`); on either under bf16 autocast,
hidden states kept in bf16 (`pipeline.hidden_states`). Nothing here is saved with the model.
"""

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.attention import GPU_NAME, NAME, use_cpu_dropout_attention, use_gpu_attention
from pipeline.dropout import use_cpu_dropout
from pipeline.hidden_states import DEVICE_TYPES, keep_hidden_states_in_bf16
from pipeline.model import attention_dropout_of


@dataclass(frozen=True)
class FastPaths:
    """What `use_fast_paths` changed: dropout modules swapped, the attention routed to (a `pipeline.attention` name;
    empty where transformers' own runs), hidden states kept in bf16."""

    dropouts: int = 0
    attention: str = ""
    hidden_states: bool = False


def use_fast_paths(model: nn.Module, device: torch.device) -> FastPaths:
    """Puts a model that runs on `device` on the paths this package has for it; says which it took."""
    if device.type not in DEVICE_TYPES:
        return FastPaths()
    hidden_states = keep_hidden_states_in_bf16(model)
    if device.type != "cpu":
        return FastPaths(attention=GPU_NAME if use_gpu_attention(model, device) else "", hidden_states=hidden_states)
    attention = NAME if use_cpu_dropout_attention(model, device, attention_dropout_of(model)) else ""
    return FastPaths(use_cpu_dropout(model, device), attention, hidden_states)
