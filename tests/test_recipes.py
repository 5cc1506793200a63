"""Every shipped recipe parses and validates (torchtune's rule: test the real files, not copies)."""

import glob
import os

import pytest

from pipeline.arguments import parse_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(ROOT, "recipes", "*.yaml")))
MEDITATIONS = os.path.join(ROOT, "..", "shared", "data", "meditations.txt")


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
