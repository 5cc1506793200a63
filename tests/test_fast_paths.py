import torch
from torch import nn

from pipeline.attention import GPU_NAME, NAME
from pipeline.dropout import CpuDropout
from pipeline.fast_paths import FastPaths, use_fast_paths
from pipeline.hidden_states import Bf16LayerNorm
from pipeline.model import load_model


def test_a_cpu_takes_all_three(family_model_dir):
    model = load_model(family_model_dir("bert"), objective="nsp")
    paths = use_fast_paths(model, torch.device("cpu"))
    assert paths.dropouts == sum(isinstance(m, CpuDropout) for m in model.modules()) > 0
    assert paths.attention == NAME and paths.hidden_states
    assert any(isinstance(m, Bf16LayerNorm) for m in model.modules())


def test_a_gpu_keeps_pytorch_s_dropout_and_takes_sdpa_without_cudnn_and_the_stream_in_bf16(family_model_dir):
    model = load_model(family_model_dir("bert"), objective="nsp")
    assert use_fast_paths(model, torch.device("cuda")) == FastPaths(attention=GPU_NAME, hidden_states=True)
    assert not any(isinstance(m, CpuDropout) for m in model.modules())
    assert model.config._attn_implementation == GPU_NAME
    assert not any(type(m) is nn.LayerNorm for m in model.modules())


def test_other_devices_take_none(family_model_dir):
    model = load_model(family_model_dir("bert"), objective="nsp")
    assert use_fast_paths(model, torch.device("mps")) == FastPaths()
    assert not model.base_model.embeddings._forward_hooks
    assert any(type(m) is nn.LayerNorm for m in model.modules())
