"""The run guard: "the same run" is what a run computes (an allowlist), so new Trainer fields never refuse a rerun."""

import dataclasses
import json

import pytest
from transformers import TrainingArguments

from pipeline.arguments import parse_args, resolved_recipe
from pipeline.checkpoints import RUN_DEFINING, check_output_dir, record_run, run_settings
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
    check_output_dir(str(tmp_path), settings(tmp_path, "--seed", "7"), overwrite=False, resuming=True)
