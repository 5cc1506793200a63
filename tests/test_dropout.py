import pytest
import torch

from pipeline.dropout import CpuDropout, keep_mask, rounded_probability, use_cpu_dropout
from tests.conftest import make_model


def test_keep_mask_drops_at_the_rate_asked_and_follows_the_seed():
    torch.manual_seed(0)
    keep, dropped = keep_mask((1000, 1001), 0.1)
    assert dropped == 6554 / 65536 and abs(dropped - 0.1) < 1e-5
    assert keep.dtype == torch.float32 and set(keep.unique().tolist()) == {0.0, 1.0}
    # a million draws: the standard deviation of the dropped share is 0.0003
    assert abs(1 - keep.mean().item() - dropped) < 0.0015
    torch.manual_seed(0)
    assert torch.equal(keep_mask((1000, 1001), 0.1)[0], keep)
    assert keep_mask((7,), 1e-9)[0].all()
    half, _ = keep_mask((3, 5, 1001), 0.5, torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.shape == (3, 5, 1001) and abs(half.float().mean() - 0.5) < 0.03


@pytest.mark.parametrize("probability", [0.1, 0.3, 0.02])
def test_eight_bit_lanes_draw_the_probability_rounded_to_a_256th(probability):
    torch.manual_seed(1)
    keep, dropped = keep_mask((1000, 1003), probability, torch.bfloat16, bits=8)  # an odd size: a part word
    assert dropped == rounded_probability(probability, 8) == round(probability * 256) / 256
    assert abs(1 - keep.float().mean().item() - dropped) < 0.0015
    assert rounded_probability(0.1, 8) == 0.1015625 and rounded_probability(0.1) == 6554 / 65536


def test_cpu_dropout_is_the_input_times_its_mask_scaled_and_so_is_the_gradient():
    x = torch.randn(4, 9, 33, requires_grad=True)
    torch.manual_seed(3)
    y = CpuDropout(0.2).train()(x)
    torch.manual_seed(3)
    keep, dropped = keep_mask(x.shape, 0.2)
    want = x.detach() * keep / (1 - dropped)
    torch.testing.assert_close(y, want)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights * keep / (1 - dropped))
    # the mean is kept: over many values the output's mean matches the input's
    ones = torch.ones(2000, 500)
    assert abs(CpuDropout(0.1).train()(ones).mean().item() - 1) < 0.003


@pytest.mark.parametrize("case", ["eval", "zero", "all", "all once rounded", "inplace"])
def test_cpu_dropout_is_nn_dropout_where_it_does_not_apply(case):
    module = CpuDropout(p={"zero": 0.0, "all": 1.0, "all once rounded": 0.999995}.get(case, 0.3),
                        inplace=case == "inplace")
    module.train(case != "eval")
    x = torch.randn(6, 7)
    torch.manual_seed(1)
    want = torch.nn.functional.dropout(x.clone(), module.p, module.training, module.inplace)
    torch.manual_seed(1)
    assert torch.equal(module(x.clone()), want)


def test_a_model_on_a_cpu_gets_it_for_every_dropout_and_saves_as_before(tmp_path):
    from transformers import BertForPreTraining

    torch.manual_seed(0)
    model = make_model(60)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    assert use_cpu_dropout(model, torch.device("cuda")) == 0  # only on a CPU
    assert use_cpu_dropout(model, torch.device("cpu")) == len(dropouts) > 0
    assert all(type(m) is CpuDropout for m in dropouts)
    ids = torch.randint(5, 60, (3, 12), generator=torch.Generator().manual_seed(1))
    padding = torch.ones_like(ids)
    padding[1, 8:] = 0
    torch.manual_seed(0)
    first = model.train()(input_ids=ids, attention_mask=padding).prediction_logits
    torch.manual_seed(0)
    assert torch.equal(first, model(input_ids=ids, attention_mask=padding).prediction_logits)  # seeded
    assert not torch.equal(first, model(input_ids=ids, attention_mask=padding).prediction_logits)  # dropout ran
    with torch.no_grad():
        evaluated = model.eval()(input_ids=ids, attention_mask=padding).prediction_logits
    model.save_pretrained(tmp_path)
    loaded = BertForPreTraining.from_pretrained(tmp_path).eval()
    assert all(torch.equal(reference[k], v) for k, v in loaded.state_dict().items() if k in reference)
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids, attention_mask=padding).prediction_logits, evaluated)


def test_gradient_checkpointing_recomputes_the_same_masks():
    """Checkpointing runs each layer's forward again in the backward, after restoring the generator's state: the
    masks drawn again must be the ones the loss saw, or the gradients would be of another network."""
    from pipeline.attention import use_cpu_dropout_attention

    ids = torch.randint(5, 60, (3, 12), generator=torch.Generator().manual_seed(1))
    labels = torch.where(torch.rand(ids.shape, generator=torch.Generator().manual_seed(2)) < 0.3, ids, -100)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = make_model(60)
        use_cpu_dropout(model, torch.device("cpu"))
        assert use_cpu_dropout_attention(model, torch.device("cpu"), model.config.attention_probs_dropout_prob)
        if checkpointing:
            model.activation_checkpointing_enable()
        model.train()
        torch.manual_seed(3)
        model(input_ids=ids, labels=labels, next_sentence_label=torch.tensor([0, 1, 0])).loss.backward()
        grads.append({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)
