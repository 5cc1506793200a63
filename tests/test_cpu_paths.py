import pytest
import torch
from transformers import AutoTokenizer

from pipeline.cpu_paths import CpuPaths, hidden_states_dtype, use_cpu_paths
from pipeline.dropout import CpuDropout
from pipeline.families import FAMILIES
from pipeline.model import load_model


def layer_output_dtypes(model, model_type, inputs):
    """The dtypes of every encoder layer's output in a forward pass under CPU bf16 autocast; and the loss."""
    seen, hooks = set(), []
    for module in model.modules():
        if type(module).__name__ == FAMILIES[model_type].layer:
            hooks.append(module.register_forward_hook(
                lambda m, a, out: seen.add((out[0] if isinstance(out, tuple) else out).dtype)))
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=model.training):
        loss = model(**inputs).loss
    for hook in hooks:
        hook.remove()
    return seen, loss


def batch(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(["The river flows to the sea and on.", "A bird sings."], ["Stone and water.", "Clouds!"],
                        padding=True, return_tensors="pt")
    labels = torch.full_like(encoded["input_ids"], -100)
    labels[:, 2::3] = encoded["input_ids"][:, 2::3]
    labels[encoded["attention_mask"] == 0] = -100
    return {**encoded, "labels": labels}


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_every_family_keeps_its_hidden_states_in_bf16_under_autocast_and_trains(model_type, family_model_dir):
    model = load_model(family_model_dir(model_type), objective="mlm").train()
    inputs = {k: v for k, v in batch(family_model_dir(model_type)).items()
              if k != "token_type_ids" or FAMILIES[model_type].token_type_ids}
    dtypes, before = layer_output_dtypes(model, model_type, inputs)
    # autocast alone leaves the stream in float32, but where a linear layer maps narrower embeddings to the hidden
    # size (ALBERT's, and ELECTRA's here: embedding_size 16), which autocast computes in bf16
    assert dtypes == {torch.bfloat16 if model_type in ("albert", "electra") else torch.float32}

    paths = use_cpu_paths(model, torch.device("cpu"))
    assert paths.hidden_states
    assert use_cpu_paths(model, torch.device("cpu")).hidden_states  # asked again: still one hook
    assert len(model.base_model.embeddings._forward_hooks) == 1
    dtypes, after = layer_output_dtypes(model, model_type, inputs)
    assert dtypes == {torch.bfloat16}
    # the same model computing in a rounder stream: a loss within bf16's precision of autocast's own
    assert after.dtype == torch.float32
    torch.testing.assert_close(after, before, rtol=0.02, atol=0)
    after.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)

    model.eval()  # outside autocast nothing changes: float32 throughout
    with torch.no_grad():
        assert layer_output_dtypes(model, model_type, inputs)[0] == {torch.float32}


def test_fp16_autocast_keeps_the_float32_stream(family_model_dir):
    model = load_model(family_model_dir("bert"), objective="mlm").train()
    use_cpu_paths(model, torch.device("cpu"))
    seen = set()
    model.base_model.embeddings.register_forward_hook(lambda m, a, out: seen.add(out.dtype))
    with torch.autocast("cpu", dtype=torch.float16):
        model(**batch(family_model_dir("bert")))
    assert seen == {torch.float32}


def test_only_on_a_cpu(family_model_dir):
    model = load_model(family_model_dir("bert"), objective="nsp")
    assert use_cpu_paths(model, torch.device("cuda")) == CpuPaths()
    assert not model.base_model.embeddings._forward_hooks
    assert not any(isinstance(m, CpuDropout) for m in model.modules())


def test_the_reported_dtype():
    assert hidden_states_dtype(CpuPaths(hidden_states=True), "bf16") == "bfloat16"
    assert hidden_states_dtype(CpuPaths(hidden_states=True), "no") == "float32"
    assert hidden_states_dtype(CpuPaths(hidden_states=True), "fp16") == "float32"
    assert hidden_states_dtype(CpuPaths(), "bf16") == "float32"  # a GPU: autocast leaves the stream float32
