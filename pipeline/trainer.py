"""Batches -> a trained model: `Trainer` with one pair draw per epoch, exact loss means and per-head training logs."""

import os

import torch
from transformers import Trainer, TrainerCallback

from pipeline.errors import UsageError
from pipeline.heads import HeadSums
from pipeline.optimizer import HeadwiseAdamW
from pipeline.sampler import EpochDrawSampler


class CollatorEpoch(TrainerCallback):
    """Tells the collator which epoch it masks for (also after a resume), so masks change every epoch."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        if hasattr(self.collator, "epoch"):
            self.collator.epoch = int(state.epoch or 0)


class PreTrainer(Trainer):
    """`Trainer` with per-epoch pair draws, exact loss normalisation, and per-head training logs.

    Trainer's own loss is a mean per micro-batch, averaged again over gradient accumulation
    steps and processes: not the mean over the examples of an optimizer step when batches
    differ in masked tokens. Here the MLM loss is divided by the masked tokens of the whole
    accumulated step and the sentence-head loss by its examples, summed over all processes,
    so training (and its logs) see the true per-token and per-example means.
    """

    loss_is_scaled_for_ga = True

    def __init__(self, *args, head: str = "nsp", head_learning_rate: float | None = None,
                 head_weights: list[str] | None = None, separate_head_moments: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.head = head
        self.head_learning_rate = head_learning_rate
        self.head_weights = set(head_weights or [])
        self.separate_head_moments = separate_head_moments
        if separate_head_moments and self.args.torch_compile:
            # The second backward keeps the graph (retain_graph) for the first, which a compiled backward allows
            # only if it may not reuse (donate) the forward's buffers.
            torch._functorch.config.donated_buffer = False
        self._headwise = None  # the HeadwiseAdamW, with separate_head_moments
        self._trainable = None
        self._step_counts = None
        self._head_sums = None
        self.add_callback(CollatorEpoch(self.data_collator))
        # Non-padding tokens trained on by this process, and of them MLM targets: summed where the batches are, so
        # counting asks the GPU to wait for nothing (an int() per step would stall the queue of kernels).
        self._token_counts = torch.zeros(2, dtype=torch.long)
        self.positions = 0  # every position of the padded batches this process trained on, padding included

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        if self.state.global_step >= self.state.max_steps:
            # Resumed from the last step's checkpoint (its final save was cut short): Trainer checks max_steps only
            # after a step, so it would train one step more than the run has. Nothing is drawn, no step is taken.
            return [], None
        batch_samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        zero = torch.tensor(0)
        tokens = sum(((b["labels"] != -100).sum() for b in batch_samples), zero)
        real = sum((b["attention_mask"].sum() for b in batch_samples), zero)
        examples = sum(len(b["input_ids"]) for b in batch_samples)
        self.positions += sum(b["input_ids"].numel() for b in batch_samples)
        self._token_counts = self._token_counts.to(real.device) + torch.stack([real, tokens])
        counts = torch.stack([tokens.float(), tokens.new_tensor(float(examples))]).to(device)
        if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        self._step_counts = counts
        return batch_samples, num_items

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        sums = getattr(outputs, "head_sums", None)
        if sums is None or self._step_counts is None:  # evaluation: the model's own means
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        tokens, examples = self._step_counts.clamp(min=1)
        head = HeadSums.from_tensor(sums)
        # DDP averages gradients over processes: each process's share of the global means counts num_processes times
        factor = self.accelerator.num_processes if self.args.average_tokens_across_devices else 1
        sentence = head.sentence_loss_sum / examples  # 0 without a sentence head
        if self._headwise is not None and torch.is_tensor(sentence) and sentence.requires_grad:
            sentence = self._second_backward(model, sentence * factor) / factor
        loss = (head.mlm_loss_sum / tokens + sentence) * factor
        detached = sums.detach()
        self._head_sums = detached if self._head_sums is None else self._head_sums + detached
        return (loss, outputs) if return_outputs else loss

    def _second_backward(self, model, sentence: torch.Tensor) -> torch.Tensor:
        """Hands the sentence loss's gradient to the HeadwiseAdamW; returns the loss, kept for the logs but with
        no gradient left to add to MLM's (the zero term keeps every weight in the graph, as DDP expects)."""
        if self._trainable is None:
            self._trainable = [p for p in model.parameters() if p.requires_grad]
        with torch.autocast(sentence.device.type, enabled=False):  # backward runs in the forward's precisions
            grads = torch.autograd.grad(sentence, self._trainable, retain_graph=True, allow_unused=True)
        self._headwise.add_second_gradients(self._trainable, grads)
        return sentence.detach() + 0 * sentence

    def create_optimizer(self, model=None):
        """Trainer's optimizer, with `head_weights` (untrained heads) in groups of their own at head_learning_rate:
        a random head needs larger steps than the pretrained encoder can take."""
        optimizer = self._with_head_groups(super().create_optimizer(model), model)
        if self.separate_head_moments:
            if not isinstance(optimizer, torch.optim.AdamW):
                raise UsageError(f"head_moments separate keeps AdamW moments per head, but optim {self.args.optim} "
                                 "is not AdamW; set optim adamw_torch_fused or head_moments shared.")
            self.optimizer = self._headwise = HeadwiseAdamW.like(optimizer, max_grad_norm=self.args.max_grad_norm)
        return self.optimizer

    def _with_head_groups(self, optimizer, model):
        if self.head_learning_rate in (None, self.args.learning_rate) or not self.head_weights:
            return optimizer
        new_ids = {id(p) for name, p in (model or self.model).named_parameters() if name in self.head_weights}
        if not new_ids:  # wrapped into flat parameters (FSDP1 without use_orig_params): no group can be made
            raise UsageError("head_learning_rate needs the model's own parameters in the optimizer, which this "
                             "wrapping hides; use FSDP2 (recipes/accelerate/fsdp.yaml) or set head_learning_rate "
                             "equal to learning_rate.")
        for group in list(optimizer.param_groups):
            head = [p for p in group["params"] if id(p) in new_ids]
            if head:
                group["params"] = [p for p in group["params"] if id(p) not in new_ids]
                optimizer.add_param_group({**group, "params": head, "lr": self.head_learning_rate})
        optimizer.param_groups[:] = [group for group in optimizer.param_groups if group["params"]]
        return optimizer

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        # A run continued to another max_steps: the scheduler, built for the new length, takes only its position
        # from the checkpoint, but the optimizer keeps the old plan's learning rate for the first step; give it the
        # new plan's (the same value when the length did not change).
        scheduler = self.lr_scheduler
        if checkpoint is not None and isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
            for group, rate in zip(self.optimizer.param_groups, rates):
                group["lr"] = rate
            scheduler._last_lr = rates

    def create_model_card(self, *args, **kwargs):
        """Keeps the model card `train` wrote (corpus, metrics, probes) over Trainer's generic one."""
        if not os.path.isfile(os.path.join(self.args.output_dir, "README.md")):
            super().create_model_card(*args, **kwargs)

    @property
    def real_tokens(self) -> int:
        """Non-padding tokens trained on by this process."""
        return int(self._token_counts[0])

    @property
    def masked_tokens(self) -> int:
        """Of those, MLM targets."""
        return int(self._token_counts[1])

    def total_real_tokens(self) -> int:
        """Non-padding tokens trained on, summed over all processes."""
        total = self._token_counts[0].to(self.args.device)
        if self.accelerator.num_processes > 1:
            total = self.accelerator.reduce(total, reduction="sum")
        return int(total)

    def log(self, logs, start_time=None):
        if "loss" in logs and self._head_sums is not None:
            sums = self._head_sums
            if self.accelerator.num_processes > 1:
                sums = self.accelerator.reduce(sums, reduction="sum")
            means = HeadSums.from_tensor(sums).metrics(self.head)
            logs.update({k: round(v, 2 if k == "perplexity" else 4) for k, v in means.items()})
            self._head_sums = None
        super().log(logs, start_time)

    def _get_train_sampler(self, train_dataset=None):
        # self.train_dataset still has the `epoch` and `length` columns Trainer drops before batching.
        if "epoch" not in self.train_dataset.column_names:
            return super()._get_train_sampler(train_dataset)
        data = self.train_dataset.with_format("numpy", columns=["epoch", "length"])[:]
        group = self.args.train_sampling_strategy == "group_by_length"
        return EpochDrawSampler(data["epoch"], data["length"] if group else None,
                                batch_size=self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                seed=self.args.seed)
