"""output_dir -> the checkpoint to resume from, and whether a run may write there ("same run" or not).

    bert-pretrain train --config recipes/quickstart.yaml --resume_from_checkpoint latest

A run records what it computes in `<output_dir>/run.json`; a later run into the same folder is
the same run if those settings match, so rerunning a recipe or running it longer reuses the folder,
while a run that would compute something else is refused rather than mixing its checkpoints with
another's or overwriting its model. Every checkpoint carries the same record in its trainer_state.json
(`RunRecord`), so a resume is checked against what the checkpoint was trained with, and a checkpoint is
checked for damage before it is used.
"""

import json
import math
import os
import re
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from pipeline.errors import RunStopped, UsageError

CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def checkpoints(output_dir: str) -> list[str]:
    """The `checkpoint-N` folders in output_dir, newest first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(output_dir) if (m := CHECKPOINT.fullmatch(name))]
    return [os.path.join(output_dir, name) for _, name in sorted(found, reverse=True)]


def latest_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` whose trainer_state.json (Trainer writes it last) is whole: a quick look, for
    what a folder holds; `checkpoint_problem` is the full check before a checkpoint is used."""
    for checkpoint in checkpoints(output_dir):
        try:
            with open(os.path.join(checkpoint, "trainer_state.json")) as f:
                json.load(f)
        except (OSError, ValueError):
            continue  # killed while saving: fall back to the one before
        return checkpoint
    return None


# What Trainer needs to resume, by kind: (how it names what is missing, the names that provide it). FSDP and
# DeepSpeed save the model and optimizer as folders of their own (pytorch_model_fsdp_0, optimizer_0, global_stepN).
REQUIRED = (("model.safetensors", ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                                   "pytorch_model_fsdp_", "global_step")),
            ("optimizer.pt", ("optimizer.pt", "optimizer_", "global_step")),
            ("scheduler.pt", ("scheduler.pt", "global_step")),
            ("rng_state.pth", ("rng_state",)))


def checkpoint_problem(checkpoint: str) -> str | None:
    """What keeps a checkpoint from being resumed (a missing, truncated or damaged file), or None if it is sound.

    Each file is read as Trainer will read it, but cheaply: a safetensors file's header must parse and its size
    match the end of its last tensor (truncation; the format carries no checksum of the data); a torch.save file
    (optimizer, scheduler, RNG states, scaler) is a zip archive whose every record carries a CRC-32, so reading it
    through once finds truncation and damaged bytes alike, without unpickling anything; JSON files must parse.
    Checked when used rather than recorded at save time, so a just-in-time checkpoint, or one an older version
    or another tool saved, is checked the same way.
    """
    folder = Path(checkpoint)
    if not folder.is_dir():
        return "it is not a folder"
    names = sorted(os.listdir(folder))
    if "checkpoint-is-incomplete.txt" in names:  # Trainer's just-in-time save removes it when it completes
        return "its save did not complete (checkpoint-is-incomplete.txt)"
    if "trainer_state.json" not in names:
        return "trainer_state.json is missing"
    for shown, providers in REQUIRED:
        if not any(name.startswith(providers) for name in names):
            return f"{shown} is missing"
    for name in names:
        path = folder / name
        if name.endswith(".safetensors"):
            problem = _safetensors_problem(path)
        elif name.endswith((".pt", ".pth", ".bin")):
            problem = _torch_file_problem(path)
        elif name.endswith(".json"):
            problem = _json_problem(path)
        else:
            continue
        if problem:
            return f"{name} {problem}"
    return None


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if size < 8 or length > size - 8:
            return f"is truncated ({size:,} bytes, less than its header)"
        try:
            header = json.loads(f.read(length))
            end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"),
                      default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "has a damaged header"
    expected = 8 + length + end
    if size != expected:
        return f"is truncated ({size:,} of {expected:,} bytes)" if size < expected else \
            f"has {size - expected:,} bytes more than its tensors"
    return None


def _torch_file_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as e:  # zipfile reports a truncated or garbled archive in several ways; any is damage
        return f"is truncated or damaged ({e})"
    return f"is damaged (its record {damaged} fails its checksum)" if damaged else None


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return "is not whole JSON (truncated or damaged)"
    return None


def resolve_resume(resume_from_checkpoint: str | None, output_dir: str, *, main_process: bool = True) -> str | None:
    """`latest` -> the newest sound checkpoint in output_dir, skipping (and naming) damaged ones; None: start
    from scratch. A checkpoint named by its path must exist and be sound."""
    say = print if main_process else (lambda *args: None)
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint != "latest":
        checkpoint = resume_from_checkpoint
        if not os.path.exists(checkpoint):
            found = ", ".join(os.path.basename(c) for c in checkpoints(output_dir)) or "none"
            raise UsageError(f"resume_from_checkpoint {checkpoint} does not exist (checkpoints in {output_dir}: "
                             f"{found}); give one of them, or `latest` for the newest sound one.")
        problem = checkpoint_problem(checkpoint)
        if problem:
            raise UsageError(f"resume_from_checkpoint {checkpoint} cannot be resumed: {problem}; give an earlier "
                             "checkpoint, or `latest`, which skips damaged ones.")
        return checkpoint
    for checkpoint in checkpoints(output_dir):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            say(f"resuming from {checkpoint}")
            return checkpoint
        say(f"skipping {checkpoint}: {problem}; trying the one before")
    say(f"no complete checkpoint in {output_dir}; starting fresh")
    return None


RUN_FILE = "run.json"
# The fields that change what a training step computes: the model and its vocabulary, the data and its pairs, the
# masking, the optimizer and schedule, the batch, the precision, the seeds. Everything else (where and how a run
# reports, evaluates, saves, pushes or is launched, and how long it goes on: a run continued with a higher
# max_steps is still the same run) is left out, so a field a new transformers release adds never refuses a rerun.
RUN_DEFINING = (
    # the model and its vocabulary
    "model_name_or_path", "model_revision", "tokenizer_name", "add_domain_tokens", "domain_tokens_file",
    "tokenizer_from_scratch", "config_name", "head_learning_rate", "head_moments",
    "sentence_gradient_share",
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


def check_output_dir(output_dir: str, settings: dict, *, overwrite: bool, resuming: bool,
                     checkpoint: str | None = None) -> None:
    """Refuses an output_dir holding the checkpoints or model of a run with other settings.

    Rerunning the same recipe reuses the folder; another run would mix its checkpoints with theirs
    and overwrite their model, so it needs overwrite_output_dir. Continuing one of the folder's own
    checkpoints is that run (`check_resume` compares the settings with the checkpoint's); asking to
    resume when there is nothing to resume is a run like any other. An attempt that stopped before its
    first checkpoint left nothing to protect. Only `RUN_DEFINING` fields are compared, so a run.json
    written by an older version, with more fields, still matches.
    """
    if overwrite and resuming:
        raise UsageError("overwrite_output_dir deletes the checkpoints that resume_from_checkpoint would continue "
                         "from; give one of the two.")
    if checkpoint is not None and Path(checkpoint).resolve().parent == Path(output_dir).resolve():
        return
    if overwrite or (latest_complete_checkpoint(output_dir) is None and
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


class RunRecord(TrainerCallback, ExportableState):
    """Puts the run's settings and process count into every checkpoint's trainer_state.json.

    Trainer saves the state of `ExportableState` callbacks there with each checkpoint, just-in-time ones
    included, and writes that file last: the record is in the checkpoint it describes, written as
    atomically as the checkpoint, and a resume reads what the checkpoint was trained with.
    """

    def __init__(self, settings: dict, processes: int = 1):
        self.settings = settings
        self.processes = processes

    def state(self) -> dict:
        return {"args": {"settings": self.settings, "processes": self.processes}, "attributes": {}}

    def on_train_begin(self, args, state, control, **kwargs):
        # A checkpoint saved without this record (an older version) lacks the entry Trainer updates at each save.
        state.stateful_callbacks.setdefault(type(self).__name__, self.state())


# Settings that a resume may split differently so long as their product with the processes, the effective batch
# (the examples an optimizer step takes, which the schedule counts in), is the checkpoint's.
BATCH = ("per_device_train_batch_size", "gradient_accumulation_steps")


def _effective_batch(settings: dict, processes: int) -> tuple[int, str]:
    per_device, accumulation = (settings.get(k) or 1 for k in BATCH)
    size = per_device * accumulation * processes
    return size, (f"{size} ({per_device} per device x {accumulation} accumulation x {processes} "
                  f"process{'es' if processes > 1 else ''})")


def check_resume(checkpoint: str, settings: dict, *, processes: int, max_steps: int,
                 num_train_epochs: float) -> str | None:
    """Refuses to continue a checkpoint with settings it was not trained with (the list of differences), or to
    a max_steps it has passed; returns what changes when the run is continued to another length."""
    name = os.path.basename(os.path.normpath(checkpoint))
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    record = (state.get("stateful_callbacks") or {}).get(RunRecord.__name__, {}).get("args")
    if not record:
        return f"{name} was saved without a record of its settings (by an older version); they are not checked"
    theirs = record["settings"]
    differ = sorted(k for k in RUN_DEFINING if k not in BATCH and settings.get(k) != theirs.get(k))
    shown = [f"{k} {settings.get(k)!r} vs {theirs.get(k)!r}" for k in differ]
    (mine, said), (recorded, recorded_said) = (_effective_batch(settings, processes),
                                               _effective_batch(theirs, record.get("processes") or 1))
    if mine != recorded:
        shown.append(f"effective batch {said} vs {recorded_said}")
    if shown:
        raise UsageError(f"{checkpoint} was trained with other settings ({', '.join(shown)} in {name}); resume it "
                         "with the settings it was trained with, or start another run in a new output_dir.")
    step, planned = state.get("global_step", 0), state.get("max_steps")
    if 0 < max_steps < step:
        raise UsageError(f"max_steps {max_steps} is below the step of {checkpoint} ({step}); give max_steps {step} "
                         "or more to continue it.")
    # Trainer builds the scheduler for the new length and loads only its position from the checkpoint.
    if max_steps > 0 and planned and max_steps != planned:
        return (f"continuing {name} of a {planned}-step run to {max_steps} steps: the learning-rate schedule "
                f"follows the {max_steps}-step plan from step {step} on")
    epochs = state.get("num_train_epochs")
    if max_steps <= 0 and epochs and math.ceil(num_train_epochs) != epochs:
        return (f"continuing {name} of a {epochs}-epoch run for {num_train_epochs:g} epochs: the learning-rate "
                f"schedule follows the plan for {num_train_epochs:g} epochs from step {step} on")
    return None


def record_run(output_dir: str, settings: dict, *, overwrite: bool) -> None:
    """Writes run.json, once the run is about to train; with overwrite, first deletes the old run's checkpoints."""
    if overwrite:
        for checkpoint in checkpoints(output_dir):
            shutil.rmtree(checkpoint)
    path = Path(output_dir) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RUN_FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(settings, indent=2, sort_keys=True))
    tmp.replace(path)


def resume_hint(output_dir: str) -> str:
    """What a stopped run left to continue from, and how."""
    checkpoint = latest_complete_checkpoint(output_dir)
    if checkpoint is None:
        return "no checkpoint was saved, so the same command starts it over"
    return f"the newest checkpoint is {checkpoint}: continue with --resume_from_checkpoint latest"


def check_finished(state, output_dir: str) -> None:
    """Raises RunStopped when training ended before its last step: a SIGTERM made Trainer save a just-in-time
    checkpoint and stop, and an unfinished run gets no final model, report or card."""
    if state.global_step >= state.max_steps:
        return
    raise RunStopped(f"training stopped at step {state.global_step} of {state.max_steps} (SIGTERM), so no final "
                     f"model, report or card was written; {resume_hint(output_dir)}.", exit_code=143)


@contextmanager
def interruption_explained(output_dir: str):
    """Ctrl-C: the KeyboardInterrupt carries one line saying what was saved and how to continue."""
    try:
        yield
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted (Ctrl-C); {resume_hint(output_dir)}") from None
