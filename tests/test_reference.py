"""docs/reference.md is what `make docs` writes from the argument dataclasses: the field reference cannot drift."""

import dataclasses
import os

from pipeline.arguments import DataArguments, ModelArguments
from pipeline.reference import render
from tests.conftest import ROOT


def test_the_field_reference_is_up_to_date():
    with open(os.path.join(ROOT, "docs", "reference.md"), encoding="utf-8") as f:
        assert f.read() == render(), "docs/reference.md is stale: run `make docs`"


def test_every_field_is_in_it():
    text = render()
    assert all(f"| `{f.name}` |" in text for dtype in (ModelArguments, DataArguments) for f in dataclasses.fields(dtype))
