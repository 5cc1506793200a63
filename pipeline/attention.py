"""Attention as each device trains it fastest: on a CPU with dropout, SDPA's math a cache-sized block of examples at
a time; on a CUDA GPU, SDPA without cuDNN's kernel, which stalls at every new batch width.

PyTorch's fused CPU attention has no dropout, so a model with attention dropout (BERT's 0.1) sends SDPA to
its math path: the whole (batch, heads, L, L) score matrix, each step a pass through memory, and a Bernoulli
mask drawn one number at a time. At 512 tokens that was most of a training step (docs/design.md). Here the same
computation (scores, softmax, dropout of the probabilities scaled by 1 / (1 - p), the values) runs on blocks of
examples whose score matrices fit in cache, with `pipeline.dropout`'s masks (8-bit lanes: p = 0.1 drops
0.1015625, and the scale uses that value). Evaluation (no dropout), GPUs, and what this does not cover (causal
masks, grouped key/value heads, position biases) go to transformers' own SDPA.

On a CUDA GPU PyTorch prefers cuDNN's attention where it has it (H100 and later), and cuDNN builds an execution
plan for every new input shape (about 0.15 s each on an H200, docs/benchmarks.md). Batches grouped by length come
in up to max_seq_length / 8 widths: BERT-base's first 28 steps at 512 tokens ran 308 samples/s with cuDNN's kernel
and 671 without. PyTorch's flash and memory-efficient kernels need no plan, and once cuDNN's plans were built they
ran within 4% of it (1% faster on grouped batches), so `gpu_attention` runs SDPA with those (and the math one).
"""

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from pipeline.dropout import ATTENTION_BITS, keep_mask, rounded_probability

NAME = "bert_pretrain_cpu_dropout"
GPU_NAME = "bert_pretrain_sdpa_without_cudnn"
GPU_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
BLOCK_SCORES = 1 << 21  # score-matrix elements per block: 8 MB in fp32, about a core's L2 cache


def blocked_dropout_attention(query, key, value, attention_mask, dropout: float, scaling: float) -> torch.Tensor:
    """softmax(q k^T * scaling + mask) with dropout, times v, for (batch, heads, length, head_dim) inputs; output
    (batch, heads, length, head_dim). A boolean mask is True where a query may attend.

    Runs in the inputs' dtype (bf16 under autocast, as SDPA does; softmax accumulates in fp32 either way), with
    every scale applied to the (length, head_dim) side: three passes over each block's scores forward, three back.
    """
    batch, heads, q_length, _ = query.shape
    rows = max(1, BLOCK_SCORES // (heads * q_length * key.shape[2]))
    # split, not slicing: each slice's gradient would be a zero-filled copy of the whole input, one per block
    masks = (attention_mask.split(rows) if attention_mask is not None and attention_mask.shape[0] == batch
             else None)
    outputs = []
    with torch.autocast(query.device.type, enabled=False):
        for i, (q, k, v) in enumerate(zip(query.split(rows), key.split(rows), value.split(rows))):
            scores = torch.matmul(q * scaling, k.transpose(-1, -2))
            if attention_mask is not None:
                mask = masks[i] if masks is not None else attention_mask
                # an additive bias, computed once for all heads (a boolean select on the scores is a slow pass)
                bias = (torch.where(mask, 0.0, torch.finfo(scores.dtype).min).to(scores.dtype)
                        if mask.dtype == torch.bool else mask.to(scores.dtype))
                scores = scores + bias
            probs = torch.softmax(scores, dim=-1)
            keep, dropped = keep_mask(probs.shape, dropout, probs.dtype, ATTENTION_BITS)
            # (probs * keep / (1 - p)) @ v, the scale on v
            outputs.append(torch.matmul(probs * keep, v * (1 / (1 - dropped))))
    return torch.cat(outputs)


def cpu_dropout_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                          scaling: float | None = None, **kwargs):
    """An `AttentionInterface` function: `blocked_dropout_attention` where it applies, else transformers' SDPA."""
    if (not dropout or rounded_probability(dropout, ATTENTION_BITS) >= 1 or query.device.type != "cpu"
            or torch.compiler.is_compiling()
            or kwargs.get("is_causal") or getattr(module, "is_causal", False)
            or getattr(module, "num_key_value_groups", 1) > 1 or kwargs.get("position_bias") is not None
            or kwargs.get("softcap") is not None or kwargs.get("output_attentions")):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    output = blocked_dropout_attention(query, key, value, attention_mask, dropout, scaling)
    return output.transpose(1, 2).contiguous(), None


def gpu_attention(module, query, key, value, attention_mask, **kwargs):
    """An `AttentionInterface` function: transformers' SDPA with `GPU_BACKENDS` (torch.compile traces the context
    too, so a compiled graph chooses among them)."""
    with sdpa_kernel(GPU_BACKENDS):  # the backward runs the kernel the forward chose
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


for _name, _function in ((NAME, cpu_dropout_attention), (GPU_NAME, gpu_attention)):
    AttentionInterface.register(_name, _function)
    # The model builds SDPA's masks for it (a name without a mask function would get no padding mask at all).
    AttentionMaskInterface.register(_name, sdpa_mask)


def _set_attention(model, name: str) -> bool:
    """Routes a model that runs transformers' SDPA to `name`; True if it did. Nothing of it is saved: checkpoints
    load with transformers' own attention."""
    if model.config._attn_implementation != "sdpa" or not getattr(model, "_can_set_attn_implementation",
                                                                   lambda: False)():
        return False  # another attention asked for, or a family not written against AttentionInterface
    model.set_attn_implementation(name)
    return model.config._attn_implementation == name


def use_cpu_dropout_attention(model, device: torch.device, attention_dropout: float | None) -> bool:
    """Gives a model that would run SDPA with attention dropout on a CPU `cpu_dropout_attention`; True if it did."""
    return device.type == "cpu" and bool(attention_dropout) and _set_attention(model, NAME)


def use_gpu_attention(model, device: torch.device) -> bool:
    """Gives a model that would run SDPA on a CUDA GPU `gpu_attention`; True if it did."""
    return device.type == "cuda" and _set_attention(model, GPU_NAME)
