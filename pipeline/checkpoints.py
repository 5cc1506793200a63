"""output_dir -> the checkpoint to resume from, and whether a run may write there ("same run" or not).

    bert-pretrain train --config recipes/quickstart.yaml --resume_from_checkpoint latest

A run records what it computes in `<output_dir>/run.json`; a later run into the same folder is
the same run if those settings match, so rerunning a recipe, resuming it or running it longer
reuses the folder, while a run that would compute something else is refused rather than mixing
its checkpoints with another's.
"""

import json
import os
import re
import shutil
from pathlib import Path

from pipeline.errors import UsageError


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
# The fields that change what a training step computes: the model and its vocabulary, the data and its pairs, the
# masking, the optimizer and schedule, the batch, the precision, the seeds. Everything else (where and how a run
# reports, evaluates, saves, pushes or is launched, and how long it goes on: a run continued with a higher
# max_steps is still the same run) is left out, so a field a new transformers release adds never refuses a rerun.
RUN_DEFINING = (
    # the model and its vocabulary
    "model_name_or_path", "model_revision", "tokenizer_name", "add_domain_tokens", "domain_tokens_file",
    "tokenizer_from_scratch", "config_name", "head_learning_rate", "sentence_gradient_share",
    # the data and its pairs
    "train_file", "dataset_name", "dataset_config_name", "text_column", "document_format", "language", "objective",
    "pairing", "dupe_factor", "validation_split_percentage", "max_seq_length", "short_seq_prob", "nsp_probability",
    # the masking
    "mlm_probability", "mask_replace_prob", "random_replace_prob", "whole_word_mask", "mask_count",
    "max_predictions_per_seq",
    # the optimizer, schedule, batch, precision and seeds
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "optim", "optim_args",
    "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "label_smoothing_factor",
    "neftune_noise_alpha", "per_device_train_batch_size", "gradient_accumulation_steps",
    "average_tokens_across_devices", "train_sampling_strategy", "bf16", "fp16", "seed", "data_seed",
)


def run_settings(recipe: dict) -> dict:
    """The settings that define what a run computes (`RUN_DEFINING`), as JSON values."""
    return json.loads(json.dumps({k: recipe[k] for k in RUN_DEFINING if k in recipe}))


def check_output_dir(output_dir: str, settings: dict, *, overwrite: bool, resuming: bool) -> None:
    """Refuses an output_dir holding the checkpoints or model of a run with other settings.

    Rerunning the same recipe reuses the folder; another run would mix its checkpoints with theirs
    and overwrite their model, so it needs overwrite_output_dir. Resuming says "this is that run".
    An attempt that stopped before its first checkpoint left nothing to protect. Only `RUN_DEFINING`
    fields are compared, so a run.json written by an older version, with more fields, still matches.
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
    changed = sorted(k for k in RUN_DEFINING if settings.get(k) != previous.get(k))
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
