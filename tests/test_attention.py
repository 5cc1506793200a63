import json

import pytest
import torch

from pipeline import attention
from pipeline.attention import blocked_dropout_attention, use_cpu_dropout_attention
from pipeline.dropout import ATTENTION_BITS, keep_mask
from tests.conftest import make_model


def _inputs(seed=0, batch=5, heads=3, length=11, dim=8):
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, length, dim, generator=generator, requires_grad=True) for _ in range(3))
    mask = torch.ones(batch, 1, length, length, dtype=torch.bool)
    mask[1, ..., 7:] = False  # padding keys
    mask[3, ..., 4:] = False
    return q, k, v, mask


def test_blocked_attention_is_the_math_of_attention_with_its_dropout_mask(monkeypatch):
    """Block by block, exactly softmax(q k^T s, padding masked) * keep / (1 - p) @ v, with the mask the seeded
    generator gives each block in turn; gradients too."""
    monkeypatch.setattr(attention, "BLOCK_SCORES", 2 * 3 * 11 * 11)  # blocks of 2, 2 and 1 examples
    q, k, v, mask = _inputs()
    torch.manual_seed(5)
    out = blocked_dropout_attention(q, k, v, mask, 0.3, 0.3)
    out.square().sum().backward()
    got = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None

    torch.manual_seed(5)
    parts = []
    for block in (slice(0, 2), slice(2, 4), slice(4, 5)):
        scores = (q[block] @ k[block].transpose(-1, -2) * 0.3).masked_fill(~mask[block], torch.finfo(torch.float).min)
        keep, dropped = keep_mask((block.stop - block.start, 3, 11, 11), 0.3, bits=ATTENTION_BITS)
        parts.append(torch.softmax(scores, -1) * keep / (1 - dropped) @ v[block])
    want = torch.cat(parts)
    want.square().sum().backward()
    torch.testing.assert_close(out, want)
    for grad, t in zip(got, (q, k, v)):
        torch.testing.assert_close(grad, t.grad)
    assert (out[1] != 0).all()  # a padded example's rows still attend to its real tokens


def _bert(**overrides):
    torch.manual_seed(0)
    model = make_model(60)
    model.config.update(overrides)
    return model


def test_a_model_uses_it_on_a_cpu_with_attention_dropout_only_and_saves_nothing_of_it(tmp_path):
    from transformers import BertForPreTraining

    ids = torch.randint(5, 60, (3, 12), generator=torch.Generator().manual_seed(1))
    padding = torch.ones_like(ids)
    padding[1, 8:] = 0
    stock = _bert()
    ours = _bert()
    assert not use_cpu_dropout_attention(ours, torch.device("cpu"), 0.0)
    assert not use_cpu_dropout_attention(ours, torch.device("cuda"), 0.1)
    assert use_cpu_dropout_attention(ours, torch.device("cpu"), 0.1)
    assert ours.config._attn_implementation == attention.NAME
    with torch.no_grad():  # evaluation: no dropout, transformers' SDPA with the padding mask
        assert torch.equal(stock.eval()(input_ids=ids, attention_mask=padding).prediction_logits,
                           ours.eval()(input_ids=ids, attention_mask=padding).prediction_logits)
    ours.train()
    torch.manual_seed(0)
    first = ours(input_ids=ids, attention_mask=padding).prediction_logits
    assert not torch.equal(first, ours(input_ids=ids, attention_mask=padding).prediction_logits)  # dropout ran
    ours.save_pretrained(tmp_path)
    assert not any("attn" in key for key in json.loads((tmp_path / "config.json").read_text()))
    assert BertForPreTraining.from_pretrained(tmp_path).config._attn_implementation == "sdpa"


def test_training_through_it_masks_padding_as_sdpa_does():
    """Train mode with a dropout that drops nothing (1e-9 rounds to 0) and no hidden dropout: the blocked path,
    given the model's own padding mask, computes what SDPA does."""
    ids = torch.randint(5, 60, (4, 10), generator=torch.Generator().manual_seed(2))
    padding = torch.ones_like(ids)
    padding[2, 6:] = 0
    stock, ours = _bert(), _bert()
    for name, module in list(stock.named_modules()) + list(ours.named_modules()):
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for name, module in list(stock.named_modules()) + list(ours.named_modules()):
        if name.endswith("attention.self"):
            module.dropout.p = 1e-9
    assert use_cpu_dropout_attention(ours, torch.device("cpu"), 1e-9)
    calls = []
    original = attention.blocked_dropout_attention
    attention.blocked_dropout_attention = lambda *a: calls.append(1) or original(*a)
    try:
        torch.testing.assert_close(ours.train()(input_ids=ids, attention_mask=padding).prediction_logits,
                                   stock.train()(input_ids=ids, attention_mask=padding).prediction_logits)
    finally:
        attention.blocked_dropout_attention = original
    assert len(calls) == 2  # both layers went through the blocked path


@pytest.mark.parametrize("kwargs", [{"is_causal": True}, {"position_bias": torch.zeros(1)}])
def test_what_it_does_not_cover_goes_to_sdpa(kwargs, monkeypatch):
    q, k, v, mask = _inputs()
    called = []
    monkeypatch.setattr(attention, "sdpa_attention_forward", lambda *a, **k: called.append(k) or ("sdpa", None))
    monkeypatch.setattr(attention, "blocked_dropout_attention", lambda *a: pytest.fail("blocked path taken"))
    assert attention.cpu_dropout_attention(torch.nn.Module(), q, k, v, mask, dropout=0.1, **kwargs)[0] == "sdpa"
    assert attention.cpu_dropout_attention(torch.nn.Module(), q, k, v, mask, dropout=0.0)[0] == "sdpa"
    # a probability that 8-bit lanes round to 1 would scale by 1 / 0
    assert attention.cpu_dropout_attention(torch.nn.Module(), q, k, v, mask, dropout=0.999)[0] == "sdpa"
    assert len(called) == 3


def _flags():
    backends = torch.backends.cuda
    return {"cudnn": backends.cudnn_sdp_enabled(), "flash": backends.flash_sdp_enabled(),
            "efficient": backends.mem_efficient_sdp_enabled(), "math": backends.math_sdp_enabled()}


def test_on_a_gpu_sdpa_runs_without_cudnn_for_that_call_only(monkeypatch):
    """cuDNN's kernel is off while the model's attention runs (the backward runs what the forward chose), and as it
    was afterwards."""
    q, k, v, mask = _inputs()
    seen = []
    monkeypatch.setattr(attention, "sdpa_attention_forward",
                        lambda *a, **kw: seen.append((_flags(), kw)) or ("o", None))
    before = _flags()
    assert attention.gpu_attention(torch.nn.Module(), q, k, v, mask, dropout=0.1, scaling=0.5) == ("o", None)
    assert seen == [({"cudnn": False, "flash": True, "efficient": True, "math": True},
                     {"dropout": 0.1, "scaling": 0.5})]
    assert _flags() == before


def test_a_model_on_a_gpu_is_routed_to_it_and_saves_nothing_of_it(tmp_path):
    """Routed only for a CUDA device; the same attention as transformers' SDPA (run here on the CPU, where the same
    function applies with the CPU's kernels); checkpoints load with SDPA."""
    from transformers import BertForPreTraining

    from pipeline.attention import use_gpu_attention

    ids = torch.randint(5, 60, (3, 12), generator=torch.Generator().manual_seed(1))
    padding = torch.ones_like(ids)
    padding[1, 8:] = 0
    stock, ours = _bert(), _bert()
    assert not use_gpu_attention(ours, torch.device("cpu"))
    assert not use_gpu_attention(ours, torch.device("mps"))
    assert ours.config._attn_implementation == "sdpa"
    assert use_gpu_attention(ours, torch.device("cuda"))
    assert ours.config._attn_implementation == attention.GPU_NAME
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(input_ids=ids, attention_mask=padding).prediction_logits,
                                   stock.eval()(input_ids=ids, attention_mask=padding).prediction_logits)
    ours.save_pretrained(tmp_path)
    assert not any("attn" in key for key in json.loads((tmp_path / "config.json").read_text()))
    assert BertForPreTraining.from_pretrained(tmp_path).config._attn_implementation == "sdpa"

    eager = _bert()
    eager.set_attn_implementation("eager")  # a user's choice of another attention is kept
    assert not use_gpu_attention(eager, torch.device("cuda"))
    assert eager.config._attn_implementation == "eager"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_batches_of_new_widths_train_through_no_cudnn_kernel():
    """Training steps at several widths under bf16 autocast: no cuDNN kernel runs for the routed model, and its loss
    is SDPA's (dropout off, so the two compute the same)."""
    from torch.profiler import ProfilerActivity, profile

    from pipeline.attention import use_gpu_attention

    stock, ours = (_bert(attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0).cuda().train() for _ in range(2))
    assert use_gpu_attention(ours, torch.device("cuda"))
    generator = torch.Generator().manual_seed(3)

    def step(model, ids, padding):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=padding).prediction_logits.float().logsumexp(-1).mean()
        loss.backward()
        return loss.detach()

    for width in (16, 24, 40):
        ids = torch.randint(5, 60, (4, width), generator=generator).cuda()
        padding = torch.ones_like(ids)
        padding[1, width // 2:] = 0
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            loss = step(ours, ids, padding)
        assert not [e.key for e in prof.key_averages() if "cudnn" in e.key.lower()]
        torch.testing.assert_close(loss, step(stock, ids, padding), rtol=0.01, atol=0)
