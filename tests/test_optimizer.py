"""pipeline/optimizer.py: AdamW on the MLM gradient plus AdamW with moments of its own on the sentence gradient."""

import io

import pytest
import torch

from pipeline.optimizer import HeadwiseAdamW


def weights(seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(4, 3, generator=generator)),
            torch.nn.Parameter(torch.randn(5, generator=generator))]


def gradients(seed: int, scale: float = 1.0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(4, 3, generator=generator), scale * torch.randn(5, generator=generator)]


def copies(params) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def step(optimizer, params, first, second=None):
    for p, g in zip(params, first):
        p.grad = g.clone()
    if second is not None:
        optimizer.add_second_gradients(params, [g.clone() for g in second])
    optimizer.step()


def test_without_a_second_gradient_it_is_adamw():
    params, reference = weights(), weights()
    ours = HeadwiseAdamW(params, lr=1e-2, weight_decay=0.1)
    theirs = torch.optim.AdamW(reference, lr=1e-2, weight_decay=0.1)
    for seed in range(3):
        step(ours, params, gradients(seed))
        step(theirs, reference, gradients(seed))
    for p, r in zip(params, reference):
        torch.testing.assert_close(p, r)


def test_each_gradient_takes_the_step_it_would_take_alone():
    """The update is MLM's AdamW step (with weight decay) plus the sentence gradient's own AdamW step: a gradient
    100 times smaller moves the weights as far as it would alone, not 100 times less."""
    params = weights()
    mlm_alone, sentence_alone = copies(params), copies(params)
    ours = HeadwiseAdamW(params, lr=1e-2, weight_decay=0.1)
    mlm_optimizer = torch.optim.AdamW(mlm_alone, lr=1e-2, weight_decay=0.1)
    sentence_optimizer = torch.optim.AdamW(sentence_alone, lr=1e-2, weight_decay=0.0)
    for seed in range(4):
        mlm, sentence = gradients(seed), gradients(seed + 100, scale=0.01)
        # Each reference step starts from our weights (weight decay depends on them); the moments are each its own.
        for ref, p in zip(mlm_alone + sentence_alone, params + params):
            ref.data.copy_(p.detach())
        before = [p.detach().clone() for p in params]
        step(ours, params, mlm, sentence)
        step(mlm_optimizer, mlm_alone, mlm)
        step(sentence_optimizer, sentence_alone, sentence)
        for p, b, m, s in zip(params, before, mlm_alone, sentence_alone):
            torch.testing.assert_close(p - b, (m - b) + (s - b))


def test_second_gradients_accumulate_over_micro_batches_and_are_then_cleared():
    params, reference = weights(), weights()
    ours = HeadwiseAdamW(params, lr=1e-2)
    theirs = HeadwiseAdamW(reference, lr=1e-2)
    first, second = gradients(1), gradients(2)
    ours.add_second_gradients(params, first[:1] + [None])  # a weight the sentence loss did not reach
    ours.add_second_gradients(params, [second[0], first[1]])
    step(ours, params, gradients(0))
    step(theirs, reference, gradients(0), [first[0] + second[0], first[1]])
    for p, r in zip(params, reference):
        torch.testing.assert_close(p, r)
    assert ours._second_grads == {}


def test_second_gradients_are_clipped_on_their_own():
    """With eps as large as the clipped gradient, Adam is not scale-free: clipping shows in the step."""
    params, clipped, unclipped = weights(), weights(), weights()
    ours = HeadwiseAdamW(params, lr=1e-2, eps=1e-2, max_grad_norm=1.0)
    as_clipped = torch.optim.AdamW(clipped, lr=1e-2, eps=1e-2, weight_decay=0.0)
    as_unclipped = torch.optim.AdamW(unclipped, lr=1e-2, eps=1e-2, weight_decay=0.0)
    huge = gradients(5, scale=100.0)
    norm = torch.cat([g.flatten() for g in huge]).norm()
    zero = [torch.zeros_like(p) for p in params]
    ours.param_groups[0]["weight_decay"] = 0.0
    step(ours, params, zero, huge)
    step(as_clipped, clipped, [g / norm for g in huge])
    step(as_unclipped, unclipped, huge)
    for p, c in zip(params, clipped):
        torch.testing.assert_close(p, c, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(params[0], unclipped[0], atol=1e-4)


def test_the_second_step_follows_the_scheduled_learning_rate():
    params = weights()
    ours = HeadwiseAdamW(params, lr=1e-2, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(ours, lambda s: 0.0)  # a schedule at zero: nothing may move
    start = [p.detach().clone() for p in params]
    step(ours, params, [torch.zeros_like(p) for p in params], gradients(3))
    scheduler.step()
    for p, s in zip(params, start):
        torch.testing.assert_close(p, s)


def test_a_resumed_optimizer_continues_exactly():
    params, resumed_params = weights(), weights()
    ours = HeadwiseAdamW(params, lr=1e-2, weight_decay=0.1)
    for seed in range(2):
        step(ours, params, gradients(seed), gradients(seed + 10))
    buffer = io.BytesIO()  # through a file, as Trainer's checkpoints go
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    assert saved["second"]["state"]  # the sentence moments travel with the checkpoint
    for p, r in zip(params, resumed_params):
        r.data.copy_(p.detach())
    resumed = HeadwiseAdamW(resumed_params, lr=1e-2, weight_decay=0.1)
    resumed.load_state_dict(saved)
    step(ours, params, gradients(7), gradients(17))
    step(resumed, resumed_params, gradients(7), gradients(17))
    for p, r in zip(params, resumed_params):
        torch.testing.assert_close(p, r)


def test_like_keeps_trainers_groups():
    params = weights()
    adamw = torch.optim.AdamW([{"params": params[:1], "weight_decay": 0.01},
                               {"params": params[1:], "weight_decay": 0.0, "lr": 3e-3}], lr=1e-3, betas=(0.8, 0.9),
                              eps=1e-6)
    ours = HeadwiseAdamW.like(adamw, max_grad_norm=1.0)
    assert [(g["lr"], g["weight_decay"], g["betas"], g["eps"]) for g in ours.param_groups] == \
        [(1e-3, 0.01, (0.8, 0.9), 1e-6), (3e-3, 0.0, (0.8, 0.9), 1e-6)]
    assert [g["weight_decay"] for g in ours.second.param_groups] == [0.0, 0.0]
    assert ours.max_grad_norm == 1.0


@pytest.mark.parametrize("fused", [False, True])
def test_fused_and_plain_agree(fused):
    params = weights()
    ours = HeadwiseAdamW(params, lr=1e-2, fused=fused)
    step(ours, params, gradients(0), gradients(1))
    reference = weights()
    plain = HeadwiseAdamW(reference, lr=1e-2, fused=False, foreach=False)
    step(plain, reference, gradients(0), gradients(1))
    for p, r in zip(params, reference):
        torch.testing.assert_close(p, r)
