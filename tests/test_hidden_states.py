import pytest
import torch
from transformers import AutoTokenizer

from torch import nn

from pipeline.hidden_states import Bf16LayerNorm, hidden_states_dtype, keep_hidden_states_in_bf16
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

    assert keep_hidden_states_in_bf16(model)
    assert keep_hidden_states_in_bf16(model)  # asked again: still one hook
    assert len(model.base_model.embeddings._forward_hooks) == 1
    assert not any(type(m) is nn.LayerNorm for m in model.modules())
    assert any(isinstance(m, Bf16LayerNorm) for m in model.modules())
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
    keep_hidden_states_in_bf16(model)
    seen = set()
    model.base_model.embeddings.register_forward_hook(lambda m, a, out: seen.add(out.dtype))
    with torch.autocast("cpu", dtype=torch.float16):
        model(**batch(family_model_dir("bert")))
    assert seen == {torch.float32}


def test_the_reported_dtype():
    assert hidden_states_dtype(True, "bf16") == "bfloat16"
    assert hidden_states_dtype(True, "no") == "float32"
    assert hidden_states_dtype(True, "fp16") == "float32"
    assert hidden_states_dtype(False, "bf16") == "float32"  # a model without embeddings to hook


def test_a_layer_norm_reads_and_writes_bf16_under_bf16_autocast():
    torch.manual_seed(0)
    norm = nn.LayerNorm(64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    stream, embeddings = torch.randn(8, 64, dtype=torch.bfloat16), torch.randn(8, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = [norm(stream), norm(embeddings).to(torch.bfloat16)]
        norm.__class__ = Bf16LayerNorm
        got = [norm(stream), norm(embeddings)]  # float32 in (the embeddings' sum): computed in float32, then cast
    for g, e in zip(got, expected):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g, e, rtol=0, atol=0)
    got[1].float().sum().backward()
    assert norm.weight.grad.dtype == torch.float32  # the weights stay float32
    assert norm(embeddings).dtype == torch.float32  # outside autocast nn.LayerNorm's own
    with torch.autocast("cpu", dtype=torch.float16):
        assert norm(embeddings).dtype == torch.float32


def test_a_family_s_own_norm_class_is_left_alone(family_model_dir):
    class OwnNorm(nn.LayerNorm):
        pass

    model = load_model(family_model_dir("bert"), objective="mlm")
    model.base_model.embeddings.LayerNorm = OwnNorm(model.config.hidden_size)
    assert keep_hidden_states_in_bf16(model)
    assert type(model.base_model.embeddings.LayerNorm) is OwnNorm
    assert type(model.base_model.encoder.layer[0].output.LayerNorm) is Bf16LayerNorm


def test_what_is_saved_loads_as_the_stock_classes(family_model_dir, tmp_path):
    from transformers import AutoModelForPreTraining

    model = load_model(family_model_dir("bert"), objective="nsp")
    keep_hidden_states_in_bf16(model)
    model.save_pretrained(tmp_path)
    again = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert {type(m) for m in again.modules()} >= {nn.LayerNorm} and not any(
        isinstance(m, Bf16LayerNorm) for m in again.modules())
    assert again.state_dict().keys() == model.state_dict().keys()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_stream_is_bf16_and_the_loss_autocast_s(family_model_dir):
    model = load_model(family_model_dir("bert"), objective="mlm").cuda().train()
    inputs = {k: v.cuda() for k, v in batch(family_model_dir("bert")).items()}

    def run():
        seen = set()
        hooks = [m.register_forward_hook(lambda m, a, out: seen.add(out[0].dtype)) for m in model.modules()
                 if type(m).__name__ == "BertLayer"]
        torch.manual_seed(0)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**inputs).loss
        for hook in hooks:
            hook.remove()
        return seen, loss

    dtypes, before = run()
    assert dtypes == {torch.float32}  # CUDA's autocast: layer norms in float32, so the stream too
    keep_hidden_states_in_bf16(model)
    dtypes, after = run()
    assert dtypes == {torch.bfloat16}
    torch.testing.assert_close(after, before, rtol=0.02, atol=0)
    after.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.requires_grad)
