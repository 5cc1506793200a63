"""Documents -> a prepared `DatasetDict` (train/validation pairs), built once per set of inputs and reused.

    bert-pretrain prepare --config recipes/quickstart.yaml

Every step is a batched `datasets` .map(): sentences split and tokenized, whole documents held out,
pairs drawn. The result is saved in the cache folder its inputs name (pipeline/cache.py), or in a
`dataset_dir` the user names, beside a `prepare.json` of everything it depends on and its files' checksums,
so `train` (in any output_dir, on this machine or another) reuses it instead of recomputing, once it has
checked that the files are those that were saved.
"""

import hashlib
import math
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, Features, List, Value, load_from_disk

from pipeline.cache import (META_FILE, file_fingerprints, find_damage, keyed_dir, read_meta, remove_stale_scratch,
                            save_atomically, scratch_path, tokenizer_fingerprint)
from pipeline.corpus import check_text_files, file_format, load_documents, resolve_train_files
from pipeline.encoding import SentenceEncoder, encode_documents
from pipeline.errors import UsageError
from pipeline.features import Template, build_features, build_span_features, special_template
from pipeline.pairs import make_pairs, pair_spans
from pipeline.stats import compute_stats, sentence_length_histogram

# int32 ids: half the disk and page cache of the int64 that Python ints would give.
DOCUMENT_FEATURES = Features({"sentences": List(List(Value("int32"))), "num_sentences": Value("int32"),
                              "num_tokens": Value("int64"), "overlong_tokens": Value("int64")})
# Above this share of tokens in "sentences" cut at max_seq_length, next-sentence pairs are arbitrary cuts.
MAX_OVERLONG_SHARE = 0.5
GROUP_SIZE = 1000  # documents per pairing batch: the pool NSP negatives are drawn from


def _pair_groups(batch, *, documents: Dataset, group_size: int, split, draws, seed, template: Template,
                 objective: str, **pair_kwargs) -> pa.Table:
    """The pairs of each group of documents whose first index is in `batch["start"]`, all draws."""
    tables = []
    for start in batch["start"]:
        group = documents.with_format("arrow")[start:start + group_size]["sentences"].combine_chunks()
        if objective != "mlm":
            # The group's tokens as one array and each document's sentence boundaries in it: pairs are spans.
            sentences = group.flatten()
            tokens = sentences.flatten().to_numpy()
            token_at = (sentences.offsets.to_numpy() - sentences.offsets[0].as_py()).tolist()
            first = (group.offsets.to_numpy() - group.offsets[0].as_py()).tolist()
            bounds = [token_at[first[d]:first[d + 1] + 1] for d in range(len(group))]
        for draw in range(draws):
            # One generator per group and draw: reruns, every rank and any number of workers build identical pairs.
            rng = random.Random(f"{seed}-{split}-{draw}-{start}")
            if objective == "mlm":
                table = build_features(make_pairs(group.to_pylist(), rng=rng, objective=objective, **pair_kwargs),
                                       template=template)
            else:
                pairs = np.array(pair_spans(bounds, rng=rng, objective=objective, **pair_kwargs),
                                 dtype=np.int64).reshape(-1, 6)  # a_start, a_end, b_start, b_end, label, truncated
                table = build_span_features(tokens, pairs[:, :4], pairs[:, 4], pairs[:, 5].astype(bool),
                                            template=template)
            if split == "train":
                table = table.append_column("epoch", pa.array(np.full(len(table), draw, dtype=np.int64)))
            tables.append(table)
    return pa.concat_tables(tables)


def check_sentence_boundaries(documents: DatasetDict, max_num_tokens: int) -> None:
    """Refuses a corpus that is mostly text without sentence ends, such as one enormous unpunctuated line."""
    # Straight from the Arrow columns: the rows the filter hid are empty documents, zeros in both.
    total, overlong = (sum(pc.sum(docs.data.column(name)).as_py() or 0 for docs in documents.values())
                       for name in ("num_tokens", "overlong_tokens"))
    if total and overlong / total > MAX_OVERLONG_SHARE:
        raise UsageError(f"{overlong / total:.0%} of the corpus is text with no sentence end within {max_num_tokens} "
                         "tokens (such as one enormous line without punctuation), so sentence pairs would be arbitrary "
                         "cuts; give punctuated text with one paragraph per line, or use --objective mlm.")


def split_documents(documents: Dataset, validation_split_percentage: float, seed: int,
                    work_dir: str | None = None) -> DatasetDict:
    """Holds out whole documents, so no sentence of a validation document is ever trained on.

    With too few documents to hold out the share and keep two to train on, every document is left
    in train and there is no validation split: `check_holdout` says so, once the checks that come
    first (is there text with sentences at all?) have passed.
    """
    if validation_split_percentage <= 0:
        return DatasetDict(train=documents)
    n_val = max(2, round(len(documents) * validation_split_percentage / 100))
    if len(documents) - n_val < 2:
        return DatasetDict(train=documents)
    cache = {f"{part}_indices_cache_file_name": str(Path(work_dir) / f"{part}-indices.arrow")
             for part in ("train", "test")} if work_dir else {}
    split = documents.train_test_split(test_size=n_val, seed=seed, shuffle=True, **cache)
    return DatasetDict(train=split["train"], validation=split["test"])


def check_holdout(documents: DatasetDict, validation_split_percentage: float) -> None:
    """Refuses a split that could hold out nothing (see `split_documents`)."""
    if validation_split_percentage > 0 and "validation" not in documents:
        raise UsageError(f"the corpus has {len(documents['train'])} documents, too few to hold out "
                         f"{validation_split_percentage}% for validation; add text or set validation_split_percentage: 0.")


def load_corpus(files: list[str], *, document_format: str = "line", text_column: str = "text",
                dataset_name: str | None = None, dataset_config_name: str | None = None, cache_dir: str | None = None,
                validation_split_percentage: float = 5.0, seed: int = 42, work_dir: str | None = None) -> DatasetDict:
    """The corpus's documents (column `text`), split into training and held-out documents.

    The one split of the corpus: the vocabulary is fitted on its training documents, and `prepare_dataset`
    tokenizes and pairs each part. With `work_dir`, the tables derived from the corpus are written there,
    not to the `datasets` cache.
    """
    check_text_files(files)
    documents = load_documents(files, document_format=document_format, text_column=text_column,
                               dataset_name=dataset_name, dataset_config_name=dataset_config_name,
                               cache_dir=cache_dir, work_dir=work_dir)
    return split_documents(documents, validation_split_percentage, seed, work_dir=work_dir)


def pair_documents(documents: Dataset, *, split: str, seed: int, tokenizer, num_proc: int | None, draws: int = 1,
                   cache_file_name: str | None = None, **pair_kwargs) -> Dataset:
    """Tokenized documents -> features, `draws` independent times, in equal-sized groups of documents.

    Equal groups (no small remainder) mean every group has other documents to draw negatives from.
    The groups are fixed by the corpus alone: the .map() runs over the groups' first indices, so
    workers split the work between whole groups and `num_proc` cannot move a group's boundaries
    (mapping over the documents themselves would, as each worker batches its own shard). All draws
    of a group are made in one pass; the `epoch` column tells them apart.
    """
    groups = max(1, math.ceil(len(documents) / GROUP_SIZE))
    group_size = max(1, math.ceil(len(documents) / groups))  # an empty split: no starts, no pairs
    starts = Dataset.from_dict({"start": list(range(0, len(documents), group_size))})
    return starts.map(
        _pair_groups, batched=True, batch_size=1, remove_columns=["start"],
        num_proc=min(num_proc, groups) if num_proc and groups > 1 else None,
        desc=f"Pairing {split}" + (f" ({draws} draws)" if draws > 1 else ""), cache_file_name=cache_file_name,
        # Named here rather than by hashing fn_kwargs, which hold the documents dataset itself.
        new_fingerprint=hashlib.sha256(repr((documents._fingerprint, split, draws, seed, sorted(pair_kwargs.items())))
                                       .encode()).hexdigest()[:16],
        fn_kwargs=dict(documents=documents.select_columns(["sentences"]), group_size=group_size, split=split,
                       draws=draws, seed=seed, template=special_template(tokenizer), **pair_kwargs))


def check_saved(target: Path, saved: dict, *, can_rebuild: bool) -> bool:
    """Whether the dataset saved in target (with prepare.json `saved`) may be used: True if every file is as it was
    saved; False, said on stderr, if it is to be rebuilt; refused if it is damaged and there is no corpus to rebuild it.
    """
    if "checksums" not in saved:
        # Prepared before checksums were recorded, so nothing can vouch for it: rebuilt where the corpus is; a copy
        # without its corpus is used unverified, as before, rather than refused with no way to fix it.
        print(f"prepared dataset in {target} has no checksums (prepared by an older version); "
              + ("rebuilding it" if can_rebuild else "using it unverified (prepare it again where the corpus is to add "
                                                     "them)"), file=sys.stderr)
        return not can_rebuild
    damage = find_damage(target, saved["checksums"])
    if damage is None:
        return True
    if not can_rebuild:
        raise UsageError(f"the prepared dataset in {target} is damaged ({damage}) and the corpus to rebuild it is not "
                         "here; copy the folder again, or give train_file.")
    print(f"prepared dataset in {target} is damaged ({damage}); rebuilding it", file=sys.stderr)
    return False


class Prepared(NamedTuple):
    """A prepared dataset, its statistics, the folder it is saved in, whether it was there already, and the seconds
    `prepare_dataset` took (to build it, or to find and load it)."""

    dataset: DatasetDict
    stats: dict
    path: str
    reused: bool
    seconds: float

    def describe(self) -> str:
        return f"prepared dataset: {self.path} ({'reused' if self.reused else f'built in {self.seconds:.1f} s'})"


def prepare_dataset(
    tokenizer,
    *,
    train_files: list[str] | None,
    dataset_dir: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    text_column: str = "text",
    document_format: str = "line",
    language: str = "en",
    cache_dir: str | None = None,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    nsp_probability: float = 0.5,
    pairing: str = "segments",
    objective: str = "nsp",
    validation_split_percentage: float = 5.0,
    seed: int = 42,
    dupe_factor: int = 1,
    num_proc: int | None = None,
    overwrite_cache: bool = False,
    portable: bool = False,
    read_corpus: Callable[[], DatasetDict] | None = None,
) -> Prepared:
    """Builds (or reuses) the prepared dataset; returns it with its statistics and where it is.

    It is reused when everything it depends on is unchanged: the corpus files (path, size, time),
    the tokenizer, the data settings (not the number of workers, which changes nothing). It lives in
    the cache folder those inputs name (`cache.keyed_dir`), or in `dataset_dir` if given. With `portable`
    (a dataset_dir the user named), the corpus files may be elsewhere or absent, as on another machine:
    the tokenizer and data settings must still match. `read_corpus`, if given, returns the corpus already
    read and split (`load_corpus`), so a corpus read for the vocabulary is not read again; it is called
    only if the dataset must be built. A saved dataset is used only once its files are checked (`check_saved`):
    a damaged one is rebuilt, or refused where the corpus is not there.
    """
    started = time.perf_counter()
    target = Path(dataset_dir) if dataset_dir else None
    if target is not None:
        remove_stale_scratch(target)
        # A rebuild replaces the whole folder: never one that holds something other than a prepared dataset.
        if target.is_dir() and any(target.iterdir()) and not any(
                (target / name).exists() for name in (META_FILE, "dataset_dict.json")):
            raise UsageError(f"dataset_dir {target} holds other files, not a prepared dataset, and would be replaced; "
                             "give a new or empty folder.")
    previous = read_meta(target) if target is not None and not overwrite_cache else None
    try:
        files = resolve_train_files(train_files, cache_dir) if train_files and not dataset_name else []
    except UsageError:
        if portable and previous is None and not overwrite_cache and target.is_dir() and any(target.iterdir()):
            raise UsageError(f"{target} has no readable prepare.json (a damaged or incomplete copy of a prepared "
                             "dataset) and the corpus to rebuild it is not here; copy the folder again, or give "
                             "train_file.")
        if not (portable and previous):
            raise
        files = None
    config = {
        # Each file with the format it is read as: a cache of a .jsonl.gz once read as text is rebuilt.
        "files": None if files is None else [entry + [file_format(entry[0])]
                                             for entry in file_fingerprints(files)],
        "dataset_name": dataset_name, "dataset_config_name": dataset_config_name, "text_column": text_column,
        "document_format": document_format, "language": language, "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_seq_length": max_seq_length, "short_seq_prob": short_seq_prob, "nsp_probability": nsp_probability,
        "pairing": pairing, "objective": objective, "validation_split_percentage": validation_split_percentage,
        "seed": seed, "dupe_factor": dupe_factor,
    }
    if target is None:
        target = keyed_dir("dataset", config, cache_dir)
        remove_stale_scratch(target)
        previous = read_meta(target) if not overwrite_cache else None
    if previous is not None:
        unchanged = {k: v for k, v in config.items() if k != "files"} == \
            {k: v for k, v in previous["config"].items() if k != "files"}
        if unchanged and (files is None or previous["config"]["files"] == config["files"]) and \
                check_saved(target, previous, can_rebuild=files is not None):
            return Prepared(load_from_disk(str(target)), previous["stats"], str(target), True,
                            time.perf_counter() - started)
        if files is None:
            raise UsageError(f"the dataset in {target} was prepared with other settings or another tokenizer, "
                             "and the corpus to rebuild it is not here; match the settings or give train_file.")

    # Intermediate tables go to a private folder, deleted whatever happens: a failed or finished run leaves
    # nothing behind in the `datasets` cache (where they would only take disk space).
    work = scratch_path(target, "work")
    shutil.rmtree(work, ignore_errors=True)  # an earlier process with this host and pid (a restarted container)
    try:
        corpus = read_corpus() if read_corpus is not None else load_corpus(
            files, document_format=document_format, text_column=text_column, dataset_name=dataset_name,
            dataset_config_name=dataset_config_name, cache_dir=cache_dir,
            validation_split_percentage=validation_split_percentage, seed=seed, work_dir=str(work))
        max_num_tokens = max_seq_length - special_template(tokenizer).num_special(pair=objective != "mlm")
        encoder = SentenceEncoder(tokenizer)
        documents = DatasetDict({
            split: texts.map(encode_documents, batched=True, input_columns="text", remove_columns=["text"],
                             num_proc=num_proc, features=DOCUMENT_FEATURES,
                             cache_file_name=str(work / f"sentences-{split}.arrow"),
                             fn_kwargs={"encoder": encoder, "max_num_tokens": max_num_tokens, "language": language},
                             desc=f"Splitting sentences ({split})")
            .filter(lambda n: [k > 0 for k in n], input_columns="num_sentences", batched=True,
                    cache_file_name=str(work / f"nonempty-{split}.arrow"))
            for split, texts in corpus.items()
        })
        if objective != "mlm":
            check_sentence_boundaries(documents, max_num_tokens)
        if objective == "nsp" and sum(map(len, documents.values())) < 2:
            raise UsageError(f"the corpus has {sum(map(len, documents.values()))} document(s); NSP needs at least two "
                             "to draw negatives from. Add text, use --document_format line, or use --objective mlm.")
        check_holdout(documents, validation_split_percentage)
        features = DatasetDict({
            split: pair_documents(docs, split=split, seed=seed, tokenizer=tokenizer, num_proc=num_proc,
                                  draws=dupe_factor if split == "train" else 1,
                                  cache_file_name=str(work / f"{split}.arrow"),
                                  max_num_tokens=max_num_tokens, short_seq_prob=short_seq_prob,
                                  nsp_probability=nsp_probability, pairing=pairing, objective=objective)
            for split, docs in documents.items()
        })
        if len(features["train"]) == 0:
            raise UsageError("no training pair could be built: no document has two sentences. Use --objective mlm, "
                             "or --document_format blank_line if documents span several lines.")
        stats = compute_stats(documents, features)
        stats["sentence_length_histogram"] = sentence_length_histogram(documents)
        save_atomically(target, {"config": config, "stats": stats}, lambda tmp: features.save_to_disk(str(tmp)),
                        keep_identical=not overwrite_cache)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Prepared(load_from_disk(str(target)), stats, str(target), False, time.perf_counter() - started)
