"""Every shipped recipe parses and validates (torchtune's rule: test the real files, not copies)."""

import glob
import os

import pytest

from pipeline.arguments import parse_args
from tests.conftest import ROOT

RECIPES = sorted(glob.glob(os.path.join(ROOT, "recipes", "*.yaml")))


def test_recipes_exist():
    names = {os.path.basename(r) for r in RECIPES}
    assert {"quickstart.yaml", "meditations-bert-base.yaml"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=os.path.basename)
def test_recipe_parses(recipe):
    model_args, data_args, training_args = parse_args(["--config", recipe])
    assert training_args.output_dir and (data_args.train_file or data_args.dataset_name)
    assert 0 < data_args.mlm_probability < 1 and data_args.max_seq_length <= 512


def test_meditations_recipe_points_at_the_tutorial_sources():
    model_args, data_args, training_args = parse_args(["--config", os.path.join(ROOT, "recipes", "meditations-bert-base.yaml")])
    assert model_args.model_name_or_path == "bert-base-uncased"
    assert data_args.train_file == [
        "https://raw.githubusercontent.com/jamescalam/transformers/main/data/text/meditations/clean.txt"]
    assert data_args.document_format == "line"


ACCELERATE = sorted(glob.glob(os.path.join(ROOT, "recipes", "accelerate", "*.yaml")))
EXPECTED = {"single_gpu.yaml": (1, False, False, False), "multi_gpu.yaml": (8, True, False, False),
            "multi_node.yaml": (16, True, False, False), "fsdp.yaml": (8, False, True, False),
            "deepspeed_zero2.yaml": (8, False, False, True)}


def test_accelerate_configs_are_all_there():
    assert {os.path.basename(f) for f in ACCELERATE} == set(EXPECTED)


@pytest.mark.parametrize("config", ACCELERATE, ids=os.path.basename)
def test_accelerate_config_loads_and_validates(config):
    """accelerate's own loader (unknown keys are an error) and its launch-argument validation."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    cluster = load_config_from_file(config)
    assert cluster.mixed_precision == "bf16"
    args = launch_command_parser().parse_args(
        ["--config_file", config, "-m", "pipeline", "train", "--config", os.path.join(ROOT, "recipes", "quickstart.yaml")])
    args, _, _ = _validate_launch_command(args)
    assert (args.num_processes, bool(args.multi_gpu), bool(args.use_fsdp), bool(args.use_deepspeed)) == \
        EXPECTED[os.path.basename(config)]
    if os.path.basename(config) == "multi_node.yaml":
        assert args.num_machines == 2 and args.main_process_port == 29500
    if os.path.basename(config) == "fsdp.yaml":  # the layer class comes from the model's family
        assert args.fsdp_transformer_layer_cls_to_wrap is None and cluster.fsdp_config["fsdp_version"] == 2
    if os.path.basename(config) == "deepspeed_zero2.yaml":
        assert args.zero_stage == 2


def test_fsdp_wraps_each_familys_transformer_layers():
    """With no class in the launch config, accelerate wraps the classes the model's `_no_split_modules` names."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    from tests.conftest import make_model

    model = make_model(60)
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    plugin.set_auto_wrap_policy(model)
    assert plugin.transformer_cls_names_to_wrap == ["BertLayer"]
