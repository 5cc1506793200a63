"""The run guard ("the same run" is what a run computes, an allowlist, so new Trainer fields never refuse a rerun),
the resume check against a checkpoint's own record, and the check of a checkpoint's files before it is used."""

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file
from transformers import TrainingArguments

from pipeline.arguments import parse_args, resolved_recipe
from pipeline.checkpoints import (RUN_DEFINING, RunRecord, check_output_dir, check_resume, checkpoint_problem,
                                  record_run, resolve_resume, run_settings)
from pipeline.errors import UsageError


def settings(tmp_path, *flags):
    return run_settings(resolved_recipe(*parse_args(["--output_dir", str(tmp_path), *flags])))


def a_finished_run(tmp_path, recorded: dict):
    record_run(str(tmp_path), recorded, overwrite=False)
    (tmp_path / "model.safetensors").write_bytes(b"weights")


def test_only_what_a_run_computes_is_recorded(tmp_path):
    recorded = settings(tmp_path)
    assert set(recorded) <= set(RUN_DEFINING) and recorded["learning_rate"] == 5e-5 and "seed" in recorded
    assert not {"output_dir", "logging_steps", "report_to", "max_steps", "probes", "push_to_hub"} & set(recorded)


def test_a_field_a_new_transformers_release_adds_never_refuses_a_rerun(tmp_path):
    a_finished_run(tmp_path, settings(tmp_path))
    recipe = resolved_recipe(*parse_args(["--output_dir", str(tmp_path)]))
    recipe["a_field_of_transformers_99"] = "whatever it is"  # a TrainingArguments field this tool has never seen
    check_output_dir(str(tmp_path), run_settings(recipe), overwrite=False, resuming=False)
    # ... nor does one that a run.json of an older version recorded and this one does not.
    previous = json.loads((tmp_path / "run.json").read_text()) | {"torch_compile_mode": "max-autotune",
                                                                  "dataloader_num_workers": 4}
    (tmp_path / "run.json").write_text(json.dumps(previous))
    check_output_dir(str(tmp_path), settings(tmp_path, "--logging_steps", "7", "--max_steps", "9"), overwrite=False,
                     resuming=False)
    how_not_what = [f.name for f in dataclasses.fields(TrainingArguments)
                    if f.name.startswith(("logging_", "save_", "hub_", "eval_", "dataloader_", "torch_compile"))]
    assert how_not_what and not set(how_not_what) & set(RUN_DEFINING)


def test_a_run_that_computes_something_else_is_refused(tmp_path):
    a_finished_run(tmp_path, settings(tmp_path))
    with pytest.raises(UsageError, match=r"other settings \(max_seq_length 128 -> 64, seed 42 -> 7\)"):
        check_output_dir(str(tmp_path), settings(tmp_path, "--max_seq_length", "64", "--seed", "7"),
                         overwrite=False, resuming=False)
    # Asking to resume when there is nothing to resume is a run like any other: refused over another run's model.
    with pytest.raises(UsageError, match=r"other settings \(seed 42 -> 7\)"):
        check_output_dir(str(tmp_path), settings(tmp_path, "--seed", "7"), overwrite=False, resuming=True)


def save_checkpoint(path, *, step: int = 4, record: dict | None = None, max_steps: int = 10, epochs: int = 1):
    """A checkpoint in Trainer's formats: safetensors weights, torch.save'd optimizer, scheduler and RNG states,
    trainer_state.json (with a RunRecord entry when given)."""
    path.mkdir(parents=True)
    model = torch.nn.Linear(8, 4)
    save_file(model.state_dict(), path / "model.safetensors")
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 8)).sum().backward()
    optimizer.step()
    torch.save(optimizer.state_dict(), path / "optimizer.pt")
    torch.save(torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0).state_dict(), path / "scheduler.pt")
    torch.save({"python": 1, "cpu": torch.random.get_rng_state()}, path / "rng_state.pth")
    state = {"global_step": step, "max_steps": max_steps, "num_train_epochs": epochs, "stateful_callbacks": {}}
    if record is not None:
        state["stateful_callbacks"]["RunRecord"] = record
    (path / "trainer_state.json").write_text(json.dumps(state))
    return str(path)


def truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = [
    ("model.safetensors truncated", lambda c: truncate(c / "model.safetensors", 0.9),
     r"model.safetensors is truncated \([\d,]+ of [\d,]+ bytes\)"),
    ("model.safetensors header cut", lambda c: truncate(c / "model.safetensors", 0.01),
     r"model.safetensors is truncated \(\d+ bytes, less than its header\)"),
    ("model.safetensors missing", lambda c: (c / "model.safetensors").unlink(), r"model.safetensors is missing"),
    ("optimizer.pt truncated", lambda c: truncate(c / "optimizer.pt"), r"optimizer.pt is truncated or damaged"),
    ("optimizer.pt damaged inside", lambda c: flip_a_byte(c / "optimizer.pt"),
     r"optimizer.pt is (damaged \(its record .+ fails its checksum\)|truncated or damaged)"),
    ("optimizer.pt missing", lambda c: (c / "optimizer.pt").unlink(), r"optimizer.pt is missing"),
    ("scheduler.pt missing", lambda c: (c / "scheduler.pt").unlink(), r"scheduler.pt is missing"),
    ("rng_state.pth truncated", lambda c: truncate(c / "rng_state.pth"), r"rng_state.pth is truncated or damaged"),
    ("rng_state.pth missing", lambda c: (c / "rng_state.pth").unlink(), r"rng_state.pth is missing"),
    ("trainer_state.json truncated", lambda c: truncate(c / "trainer_state.json"),
     r"trainer_state.json is not whole JSON"),
    ("trainer_state.json missing", lambda c: (c / "trainer_state.json").unlink(), r"trainer_state.json is missing"),
    ("just-in-time save cut short", lambda c: (c / "checkpoint-is-incomplete.txt").write_text("in progress"),
     r"its save did not complete"),
]


@pytest.mark.parametrize("name, damage, problem", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_latest_skips_a_damaged_checkpoint_and_says_why(name, damage, problem, tmp_path, capsys):
    save_checkpoint(tmp_path / "checkpoint-2", step=2)
    newest = save_checkpoint(tmp_path / "checkpoint-10", step=10)
    assert checkpoint_problem(newest) is None
    damage(tmp_path / "checkpoint-10")
    assert resolve_resume("latest", str(tmp_path)) == str(tmp_path / "checkpoint-2")
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"skipping {tmp_path / 'checkpoint-10'}: ") and printed[0].endswith(
        "; trying the one before"), printed
    assert __import__("re").search(problem, printed[0]), printed[0]
    assert printed[1] == f"resuming from {tmp_path / 'checkpoint-2'}"
    with pytest.raises(UsageError, match=r"checkpoint-10 cannot be resumed: .*; give an earlier checkpoint"):
        resolve_resume(str(tmp_path / "checkpoint-10"), str(tmp_path))


def test_a_checkpoint_path_that_does_not_exist_names_the_ones_there(tmp_path, capsys):
    save_checkpoint(tmp_path / "checkpoint-2", step=2)
    save_checkpoint(tmp_path / "checkpoint-10", step=10)
    with pytest.raises(UsageError, match=r"checkpoint-01 does not exist \(checkpoints in .+: checkpoint-10, "
                                         r"checkpoint-2\); give one of them, or `latest`"):
        resolve_resume(str(tmp_path / "checkpoint-01"), str(tmp_path))
    shutil.rmtree(tmp_path / "checkpoint-2")
    shutil.rmtree(tmp_path / "checkpoint-10")
    assert resolve_resume("latest", str(tmp_path)) is None
    assert capsys.readouterr().out == f"no complete checkpoint in {tmp_path}; starting fresh\n"


def test_a_resume_must_continue_with_the_checkpoints_settings(tmp_path):
    trained = settings(tmp_path, "--learning_rate", "3.0e-4")
    checkpoint = save_checkpoint(tmp_path / "checkpoint-8", step=8, max_steps=20,
                                 record=RunRecord(trained, processes=2).state())
    assert check_resume(checkpoint, trained, processes=2, max_steps=20, num_train_epochs=3) is None
    with pytest.raises(UsageError, match=r"checkpoint-8 was trained with other settings \(learning_rate 1e-05 vs "
                                         r"0\.0003, seed 7 vs 42 in checkpoint-8\)"):
        check_resume(checkpoint, settings(tmp_path, "--learning_rate", "1.0e-5", "--seed", "7"), processes=2,
                     max_steps=20, num_train_epochs=3)
    # The batch may be split otherwise, so long as the effective batch is the checkpoint's (8 x 1 x 2 = 16) ...
    split = settings(tmp_path, "--learning_rate", "3.0e-4", "--per_device_train_batch_size", "4",
                     "--gradient_accumulation_steps", "4")
    assert check_resume(checkpoint, split, processes=1, max_steps=20, num_train_epochs=3) is None
    # ... not another effective batch, whichever of its parts changed.
    with pytest.raises(UsageError, match=r"effective batch 8 \(8 per device x 1 accumulation x 1 process\) vs "
                                         r"16 \(8 per device x 1 accumulation x 2 processes\) in checkpoint-8"):
        check_resume(checkpoint, trained, processes=1, max_steps=20, num_train_epochs=3)
    # A longer run is the same run, on a schedule planned for its new length; a max_steps it has passed is not.
    assert check_resume(checkpoint, trained, processes=2, max_steps=40, num_train_epochs=3) == (
        "continuing checkpoint-8 of a 20-step run to 40 steps: the learning-rate schedule follows the 40-step plan "
        "from step 8 on")
    with pytest.raises(UsageError, match=r"max_steps 5 is below the step of .*checkpoint-8 \(8\); give max_steps 8"):
        check_resume(checkpoint, trained, processes=2, max_steps=5, num_train_epochs=3)
    epochs = save_checkpoint(tmp_path / "checkpoint-9", step=9, max_steps=30, epochs=3,
                             record=RunRecord(trained, 2).state())
    assert check_resume(epochs, trained, processes=2, max_steps=-1, num_train_epochs=3) is None
    assert check_resume(epochs, trained, processes=2, max_steps=-1, num_train_epochs=5) == (
        "continuing checkpoint-9 of a 3-epoch run for 5 epochs: the learning-rate schedule follows the plan for 5 "
        "epochs from step 9 on")
