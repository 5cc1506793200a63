"""Prepared pairs -> training order: each epoch trains on its own draw of NSP pairs.

Pairs drawn once and repeated every epoch let a model memorise which B follows which
A on a small corpus. `prepare` therefore draws the training pairs `dupe_factor` times
(google-research/bert's name), tagging each row with its draw in column `epoch`; this
sampler gives epoch e the rows of draw e mod dupe_factor, shuffled, optionally grouped
by length. Trainer calls `set_epoch` on it before every epoch, also under accelerate.
"""

import contextlib
import functools
import json
import math
import os
import re
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import torch
from torch.utils.data import Sampler
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import get_length_grouped_indices

from pipeline.errors import UsageError


# Trainer uploads output_dir minus "_*" and "checkpoint-*"; the prepared dataset, TensorBoard runs, the
# from-scratch tokenizer's working copy and temporary files live there too and must not go to the Hub.
PUSH_IGNORE_PATTERNS = ["dataset/*", "dataset-general/*", ".dataset*", "runs/*", "*.tmp*", "scratch-tokenizer/*"]


@contextlib.contextmanager
def hub_ignore_patterns(patterns: list[str]):
    """Adds ignore patterns to every `HfApi.upload_folder` call made inside the block."""
    original = huggingface_hub.HfApi.upload_folder

    @functools.wraps(original)
    def upload_folder(self, *args, **kwargs):
        kwargs["ignore_patterns"] = [*(kwargs.get("ignore_patterns") or []), *patterns]
        return original(self, *args, **kwargs)

    huggingface_hub.HfApi.upload_folder = upload_folder
    try:
        yield
    finally:
        huggingface_hub.HfApi.upload_folder = original


def latest_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` whose trainer_state.json (Trainer writes it last) is whole."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted((int(m.group(1)), name) for name in os.listdir(output_dir)
                   if (m := re.fullmatch(r"checkpoint-(\d+)", name)))
    for _, name in reversed(steps):
        state = os.path.join(output_dir, name, "trainer_state.json")
        try:
            with open(state) as f:
                json.load(f)
        except (OSError, ValueError):
            continue  # killed while saving: fall back to the one before
        return os.path.join(output_dir, name)
    return None


def resolve_resume(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """`latest` -> the newest complete checkpoint in output_dir (None: start from scratch)."""
    if resume_from_checkpoint != "latest":
        return resume_from_checkpoint
    checkpoint = latest_complete_checkpoint(output_dir)
    print(f"resuming from {checkpoint}" if checkpoint else f"no complete checkpoint in {output_dir}; starting fresh")
    return checkpoint


RUN_FILE = "run.json"
# Fields that change where or how a run reports or runs, not what it computes.
# Fields that change where or how a run reports, evaluates or runs, or how long it goes on, not what a step
# computes: a run continued with a higher max_steps, or evaluated differently, is still the same run.
NOT_RUN_DEFINING = {"output_dir", "logging_dir", "run_name", "resume_from_checkpoint", "overwrite_output_dir",
                    "overwrite_cache", "report_to", "disable_tqdm", "push_to_hub", "hub_model_id", "hub_strategy",
                    "hub_private_repo", "hub_always_push", "hub_revision", "use_cpu", "local_rank", "logging_steps",
                    "logging_strategy", "logging_first_step", "save_steps", "save_strategy", "save_total_limit",
                    "save_only_model", "save_on_each_node", "eval_steps", "eval_strategy", "eval_on_start",
                    "per_device_eval_batch_size", "max_eval_samples", "general_eval_file", "probes", "max_steps",
                    "num_train_epochs"}


def run_settings(recipe: dict) -> dict:
    """The settings that define what a run computes, as JSON values."""
    return json.loads(json.dumps({k: v for k, v in recipe.items()
                                  if k not in NOT_RUN_DEFINING and not k.startswith("dataloader_")}))


def check_output_dir(output_dir: str, settings: dict, *, overwrite: bool, resuming: bool) -> None:
    """Refuses an output_dir holding the checkpoints or model of a run with other settings.

    Rerunning the same recipe reuses the folder; another run would mix its checkpoints with theirs
    and overwrite their model, so it needs overwrite_output_dir. Resuming says "this is that run".
    An attempt that stopped before its first checkpoint left nothing to protect.
    """
    if overwrite and resuming:
        raise UsageError("overwrite_output_dir deletes the checkpoints that resume_from_checkpoint would continue "
                         "from; give one of the two.")
    if overwrite or resuming or (latest_complete_checkpoint(output_dir) is None and
                                 not (Path(output_dir) / "model.safetensors").is_file()):
        return
    path = Path(output_dir) / RUN_FILE
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UsageError(f"output_dir {output_dir} holds a model or checkpoints of another run; choose a new "
                         "output_dir, or pass --overwrite_output_dir true to replace them.") from None
    changed = sorted(k for k in settings.keys() | previous.keys() if settings.get(k) != previous.get(k))
    if changed:
        shown = ", ".join(f"{k} {previous.get(k)!r} -> {settings.get(k)!r}" for k in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise UsageError(f"output_dir {output_dir} holds a run with other settings ({shown}{more}); choose a new "
                         "output_dir, or pass --overwrite_output_dir true to replace it.")


def record_run(output_dir: str, settings: dict, *, overwrite: bool) -> None:
    """Writes run.json, once the run is about to train; with overwrite, first deletes the old run's checkpoints."""
    if overwrite and os.path.isdir(output_dir):
        for name in os.listdir(output_dir):
            if re.fullmatch(r"checkpoint-\d+", name):
                shutil.rmtree(os.path.join(output_dir, name))
    path = Path(output_dir) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RUN_FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(settings, indent=2, sort_keys=True))
    tmp.replace(path)


def head_metrics(sums: list[float], head: str = "nsp") -> dict[str, float]:
    """Per-head means from [mlm loss sum, masked tokens, mlm correct, head loss sum, examples, head correct]."""
    mlm_loss = sums[0] / max(sums[1], 1)
    metrics = {"mlm_loss": round(mlm_loss, 4), "mlm_accuracy": round(sums[2] / max(sums[1], 1), 4),
               "perplexity": round(math.exp(min(mlm_loss, 50)), 2)}
    if len(sums) > 3:
        metrics[f"{head}_loss"] = round(sums[3] / max(sums[4], 1), 4)
        metrics[f"{head}_accuracy"] = round(sums[5] / max(sums[4], 1), 4)
    return metrics


class CollatorEpoch(TrainerCallback):
    """Tells the collator which epoch it masks for (also after a resume), so masks change every epoch."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        if hasattr(self.collator, "epoch"):
            self.collator.epoch = int(state.epoch or 0)


class EpochDrawSampler(Sampler[int]):
    """Yields the indices of one draw per epoch; every epoch has the same length (the smallest draw's)."""

    def __init__(self, draws: np.ndarray, lengths: np.ndarray | None, *, batch_size: int, seed: int):
        self.by_draw = [np.flatnonzero(draws == d) for d in np.unique(draws)]
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.num_samples = min(len(rows) for rows in self.by_draw)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        rows = self.by_draw[self.epoch % len(self.by_draw)]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        rows = rows[torch.randperm(len(rows), generator=generator).numpy()[: self.num_samples]]
        if self.lengths is None:
            return iter(rows.tolist())
        # Batches of similar lengths pad less; mega-batches keep the order random (LengthGroupedSampler's trick).
        order = get_length_grouped_indices(self.lengths[rows].tolist(), self.batch_size, generator=generator)
        return iter(rows[order].tolist())


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
                 head_weights: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.head = head
        self.head_learning_rate = head_learning_rate
        self.head_weights = set(head_weights or [])
        self._step_counts = None
        self._head_sums = None
        self.add_callback(CollatorEpoch(self.data_collator))
        self.real_tokens = 0  # non-padding tokens trained on by this process
        self.masked_tokens = 0  # of which MLM targets

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batch_samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        tokens = sum(int((b["labels"] != -100).sum()) for b in batch_samples)
        examples = sum(len(b["input_ids"]) for b in batch_samples)
        self.real_tokens += sum(int(b["attention_mask"].sum()) for b in batch_samples)
        self.masked_tokens += tokens
        counts = torch.tensor([tokens, examples], dtype=torch.float32, device=device)
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
        loss = sums[0] / tokens + (sums[3] / examples if len(sums) > 3 else 0)
        if self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        detached = sums.detach()
        self._head_sums = detached if self._head_sums is None else self._head_sums + detached
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None):
        """Trainer's optimizer, with `head_weights` (untrained heads) in groups of their own at head_learning_rate:
        a random head needs larger steps than the pretrained encoder can take."""
        optimizer = super().create_optimizer(model)
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

    def _push_from_checkpoint(self, checkpoint_folder):
        with hub_ignore_patterns(PUSH_IGNORE_PATTERNS):
            super()._push_from_checkpoint(checkpoint_folder)

    def push_to_hub(self, *args, **kwargs):
        with hub_ignore_patterns(PUSH_IGNORE_PATTERNS):
            return super().push_to_hub(*args, **kwargs)

    def create_model_card(self, *args, **kwargs):
        """Keeps the model card `train` wrote (corpus, metrics, probes) over Trainer's generic one."""
        if not os.path.isfile(os.path.join(self.args.output_dir, "README.md")):
            super().create_model_card(*args, **kwargs)

    def total_real_tokens(self) -> int:
        """Non-padding tokens trained on, summed over all processes."""
        total = torch.tensor(self.real_tokens, device=self.args.device)
        if self.accelerator.num_processes > 1:
            total = self.accelerator.reduce(total, reduction="sum")
        return int(total)

    def log(self, logs, start_time=None):
        if "loss" in logs and self._head_sums is not None:
            sums = self._head_sums
            if self.accelerator.num_processes > 1:
                sums = self.accelerator.reduce(sums, reduction="sum")
            logs.update(head_metrics(sums.tolist(), self.head))
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
