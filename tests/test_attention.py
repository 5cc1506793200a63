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
