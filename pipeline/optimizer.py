"""Two heads, one encoder -> one optimizer step: AdamW with moments of their own for the sentence head's gradient.

Summed into one gradient, MLM's and the sentence head's gradients share Adam's per-weight normalisation, the
root of the summed gradient's second moment. Where a new sentence head meets MLM, MLM's gradient is tens of
times larger on every encoder weight, so the sentence head's part of each step is a small fraction of what it
would take alone, and it stays at the majority class for hundreds of steps. Here each gradient is normalised
by its own moments and the two updates are added: the step MLM would take alone plus the step the sentence
head would take alone (measured in docs/design.md). The sentence gradient comes from a second backward pass
(`PreTrainer.compute_loss`), handed over with `add_second_gradients`.
"""

import torch
import torch.distributed as dist


class HeadwiseAdamW(torch.optim.AdamW):
    """AdamW on `.grad` (MLM, with weight decay) plus an AdamW step on a second gradient with moments of its own.

    The second step has no weight decay (the first applied it) and follows the first's learning rates, so a
    scheduler driving this optimizer drives both. Under DDP the second gradients, which no DDP hook sees, are
    averaged over processes here, as DDP averages `.grad`; they are clipped to `max_grad_norm` on their own, as
    Trainer clips `.grad`. `state_dict` carries both sets of moments, so a resumed run continues exactly.
    """

    def __init__(self, params, *, max_grad_norm: float | None = None, **adamw_kwargs):
        super().__init__(params, **adamw_kwargs)
        self.max_grad_norm = max_grad_norm
        self.second = torch.optim.AdamW([{**group, "params": group["params"], "weight_decay": 0.0}
                                         for group in self.param_groups], **adamw_kwargs)
        self._second_grads: dict[torch.Tensor, torch.Tensor] = {}

    @classmethod
    def like(cls, optimizer: torch.optim.AdamW, *, max_grad_norm: float | None = None) -> "HeadwiseAdamW":
        """The same parameter groups and settings as a built AdamW (Trainer's, with its decay and rate groups)."""
        groups = [dict(group) for group in optimizer.param_groups]
        settings = {k: v for k, v in optimizer.defaults.items() if k in ("betas", "eps", "amsgrad", "foreach",
                                                                          "fused", "maximize")}
        return cls(groups, max_grad_norm=max_grad_norm, lr=optimizer.defaults["lr"], **settings)

    def add_second_gradients(self, params, grads) -> None:
        """Adds (accumulates, over micro-batches) the sentence head's gradient; None where it did not reach."""
        for param, grad in zip(params, grads):
            if grad is not None:
                held = self._second_grads.get(param)
                self._second_grads[param] = grad if held is None else held + grad

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        if not self._second_grads:
            return loss
        params, grads = list(self._second_grads), list(self._second_grads.values())
        self._second_grads = {}
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)  # gloo has no average: sum, then divide
            flat /= dist.get_world_size()
            grads = [part.view_as(g) for part, g in zip(flat.split([g.numel() for g in grads]), grads)]
        # The second AdamW steps the weights the second gradient reached, and only those: the others get no grad.
        own = {p: p.grad for group in self.param_groups for p in group["params"]}
        for param in own:
            param.grad = None
        for param, grad in zip(params, grads):
            param.grad = grad
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        for group, second in zip(self.param_groups, self.second.param_groups):
            second["lr"] = group["lr"]
        self.second.step()
        for param, grad in own.items():
            param.grad = grad
        return loss

    def state_dict(self):
        return {**super().state_dict(), "second": self.second.state_dict()}

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        second = state_dict.pop("second", None)
        super().load_state_dict(state_dict)
        if second is not None:  # a checkpoint of plain AdamW: the second moments start afresh
            self.second.load_state_dict(second)
