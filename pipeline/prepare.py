"""Corpus -> a prepared `DatasetDict` (train/validation pairs) saved to disk and reused.

    bert-pretrain prepare --config recipes/quickstart.yaml

Every step is a batched `datasets` .map(); the result is written with
`save_to_disk` beside a `prepare.json` of everything it depends on, so `train`
(on this machine or another) reuses it instead of recomputing.
"""

import contextlib
import hashlib
import json
import math
import os
import random
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, Features, List, Value, load_from_disk

from pipeline.corpus import check_text_files, file_format, load_documents, resolve_train_files
from pipeline.errors import UsageError
from pipeline.features import build_features
from pipeline.pairs import make_pairs
from pipeline.sentences import SentenceEncoder, encode_documents

CONFIG_FILE = "prepare.json"
# int32 ids: half the disk and page cache of the int64 that Python ints would give.
DOCUMENT_FEATURES = Features({"sentences": List(List(Value("int32"))), "num_sentences": Value("int32"),
                              "num_tokens": Value("int64"), "overlong_tokens": Value("int64")})
# Above this share of tokens in "sentences" cut at max_seq_length, next-sentence pairs are arbitrary cuts.
MAX_OVERLONG_SHARE = 0.5
GROUP_SIZE = 1000  # documents per pairing batch: the pool NSP negatives are drawn from


def tokenizer_fingerprint(tokenizer) -> str:
    """What decides the token ids: vocabulary, added tokens, normalizer... but not padding/truncation settings,
    which a saved copy of the same tokenizer may carry differently."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()[:16]
    state = json.loads(backend.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def _pair_groups(batch, *, documents: Dataset, group_size: int, split, draws, seed, cls_token_id, sep_token_id,
                 **pair_kwargs) -> pa.Table:
    """The pairs of each group of documents whose first index is in `batch["start"]`, all draws."""
    tables = []
    for start in batch["start"]:
        sentences = documents[start:start + group_size]["sentences"]
        for draw in range(draws):
            # One generator per group and draw: reruns, every rank and any number of workers build identical pairs.
            rng = random.Random(f"{seed}-{split}-{draw}-{start}")
            pairs = make_pairs(sentences, rng=rng, **pair_kwargs)
            table = build_features(pairs, cls_token_id=cls_token_id, sep_token_id=sep_token_id)
            if split == "train":
                table = table.append_column("epoch", pa.array(np.full(len(pairs), draw, dtype=np.int64)))
            tables.append(table)
    return pa.concat_tables(tables)


def check_sentence_boundaries(documents: Dataset, max_num_tokens: int) -> None:
    """Refuses a corpus that is mostly text without sentence ends, such as one enormous unpunctuated line."""
    # Straight from the Arrow columns: the rows the filter hid are empty documents, zeros in both.
    total, overlong = (pc.sum(documents.data.column(name)).as_py() or 0 for name in ("num_tokens", "overlong_tokens"))
    if total and overlong / total > MAX_OVERLONG_SHARE:
        raise UsageError(f"{overlong / total:.0%} of the corpus is text with no sentence end within {max_num_tokens} "
                         "tokens (such as one enormous line without punctuation), so sentence pairs would be arbitrary "
                         "cuts; give punctuated text with one paragraph per line, or use --objective mlm.")


def split_documents(documents: Dataset, validation_split_percentage: float, seed: int,
                    work_dir: str | None = None) -> DatasetDict:
    """Holds out whole documents, so no sentence of a validation document is ever trained on."""
    if validation_split_percentage <= 0:
        return DatasetDict(train=documents)
    n_val = max(2, round(len(documents) * validation_split_percentage / 100))
    if len(documents) - n_val < 2:
        raise UsageError(f"the corpus has {len(documents)} documents, too few to hold out "
                         f"{validation_split_percentage}% for validation; add text or set validation_split_percentage: 0.")
    cache = {f"{part}_indices_cache_file_name": os.path.join(work_dir, f"{part}-indices.arrow")
             for part in ("train", "test")} if work_dir else {}
    split = documents.train_test_split(test_size=n_val, seed=seed, shuffle=True, **cache)
    return DatasetDict(train=split["train"], validation=split["test"])


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
                       draws=draws, seed=seed, cls_token_id=tokenizer.cls_token_id,
                       sep_token_id=tokenizer.sep_token_id, **pair_kwargs))


def _columns(dataset: Dataset, names: list[str]) -> dict:
    # select_columns first: through an indices mapping (filter, split), formatting gathers whole rows,
    # token lists included, which would put the whole corpus in memory.
    return dataset.select_columns(names).with_format("numpy")[:] if len(dataset) else {n: np.zeros(0) for n in names}


def sentence_length_histogram(documents: Dataset, edges=(8, 16, 32, 64, 128, 256)) -> dict[str, int]:
    """Tokens per sentence, counted in bins, straight from the Arrow column.

    Rows a filter hid are still in the table, but only empty documents are ever filtered out.
    """
    lengths = pc.list_value_length(pc.list_flatten(documents.data.column("sentences"))).to_numpy()
    bounds = (0, *edges, np.inf)
    counts, _ = np.histogram(lengths, bins=bounds)
    labels = [f"{lo + 1}-{hi}" for lo, hi in zip(bounds[:-2], bounds[1:-1])] + [f">{edges[-1]}"]
    return dict(zip(labels, counts.tolist()))


def compute_stats(documents: DatasetDict, features: DatasetDict) -> dict:
    stats = {}
    for split in features:
        docs = _columns(documents[split], ["num_sentences", "num_tokens"])
        names = ["length", "truncated"] + (["next_sentence_label"] if "next_sentence_label" in features[split].column_names else [])
        feats = _columns(features[split], names)
        draws = len(set(features[split].unique("epoch"))) if "epoch" in features[split].column_names else 1
        n = len(features[split])
        s = {
            "documents": len(documents[split]),
            "sentences": int(docs["num_sentences"].sum()),
            "tokens": int(docs["num_tokens"].sum()),
            "examples": n // draws,
            "draws": draws,
            "example_tokens": int(feats["length"].sum()),
            "mean_example_length": float(feats["length"].mean()) if n else 0.0,
            "truncated_share": float(feats["truncated"].mean()) if n else 0.0,
        }
        if "next_sentence_label" in feats and n:
            s["negative_share"] = float(feats["next_sentence_label"].mean())
        stats[split] = s
    return stats


def prepare_dataset(
    tokenizer,
    *,
    train_files: list[str] | None,
    dataset_dir: str,
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
) -> tuple[DatasetDict, dict]:
    """Builds (or reuses) the prepared dataset; returns it and its statistics.

    It is reused when everything it depends on is unchanged. With `portable` (a dataset_dir the
    user named), the corpus files may be elsewhere or absent, as on another machine: the
    tokenizer and data settings must still match.
    """
    remove_stale_scratch(dataset_dir)
    saved = Path(dataset_dir) / CONFIG_FILE
    previous = json.loads(saved.read_text()) if saved.is_file() and not overwrite_cache else None
    try:
        files = resolve_train_files(train_files, cache_dir) if train_files and not dataset_name else []
    except UsageError:
        if not (portable and previous):
            raise
        files = None
    config = {
        "files": None if files is None else [
            [os.path.abspath(f), os.path.getsize(f), os.path.getmtime(f), file_format(f)] if os.path.isfile(f) else [f]
            for f in files],  # and the format read: a cache of a .jsonl.gz once read as text is rebuilt
        "dataset_name": dataset_name, "dataset_config_name": dataset_config_name, "text_column": text_column,
        "document_format": document_format, "language": language, "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_seq_length": max_seq_length, "short_seq_prob": short_seq_prob, "nsp_probability": nsp_probability,
        "pairing": pairing, "objective": objective, "validation_split_percentage": validation_split_percentage,
        "seed": seed, "dupe_factor": dupe_factor,
    }
    if previous is not None:
        unchanged = {k: v for k, v in config.items() if k != "files"} == \
            {k: v for k, v in previous["config"].items() if k != "files"}
        if unchanged and (files is None or previous["config"]["files"] == config["files"]):
            return load_from_disk(dataset_dir), previous["stats"]
        if files is None:
            raise UsageError(f"the dataset in {dataset_dir} was prepared with other settings or another tokenizer, "
                             "and the corpus to rebuild it is not here; match the settings or give train_file.")

    check_text_files(files or [])
    # Intermediate tables go to a private folder, deleted whatever happens: a failed or finished run leaves
    # nothing behind in the `datasets` cache (where they would only take disk space).
    work = scratch_path(dataset_dir, "work")
    shutil.rmtree(work, ignore_errors=True)  # an earlier process with this host and pid (a restarted container)
    try:
        documents = load_documents(files, document_format=document_format, text_column=text_column,
                                   dataset_name=dataset_name, dataset_config_name=dataset_config_name,
                                   cache_dir=cache_dir, work_dir=str(work))
        max_num_tokens = max_seq_length - (3 if objective != "mlm" else 2)
        documents = documents.map(encode_documents, batched=True, input_columns="text", remove_columns=["text"],
                                  num_proc=num_proc, features=DOCUMENT_FEATURES,
                                  cache_file_name=str(work / "sentences.arrow"),
                                  fn_kwargs={"encoder": SentenceEncoder(tokenizer), "max_num_tokens": max_num_tokens,
                                             "language": language},
                                  desc="Splitting sentences")
        documents = documents.filter(lambda n: [k > 0 for k in n], input_columns="num_sentences", batched=True,
                                     cache_file_name=str(work / "nonempty.arrow"))
        if objective != "mlm":
            check_sentence_boundaries(documents, max_num_tokens)
        if objective == "nsp" and len(documents) < 2:
            raise UsageError(f"the corpus has {len(documents)} document(s); NSP needs at least two to draw negatives "
                             "from. Add text, use --document_format line, or use --objective mlm.")
        histogram = sentence_length_histogram(documents)
        documents = split_documents(documents, validation_split_percentage, seed, work_dir=str(work))
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
        stats["sentence_length_histogram"] = histogram
        save_atomically(features, dataset_dir, {"config": config, "stats": stats}, keep_identical=not overwrite_cache)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return load_from_disk(dataset_dir), stats


def scratch_path(dataset_dir: str, kind: str) -> Path:
    """A hidden sibling of dataset_dir owned by this process: `.NAME.KIND-HOST-PID`."""
    target = Path(dataset_dir)
    return target.with_name(f".{target.name}.{kind}-{socket.gethostname()}-{os.getpid()}")


def remove_stale_scratch(dataset_dir: str) -> None:
    """Deletes what a killed `prepare` on this host left (its process is gone); never used, only disk space."""
    target = Path(dataset_dir)
    if not target.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:work|tmp|old)-{re.escape(socket.gethostname())}-(\d+)")
    for entry in sorted(target.parent.iterdir()):
        if not ((m := pattern.fullmatch(entry.name)) and not _alive(int(m.group(1)))):
            continue
        if not target.exists() and ".old-" in entry.name and (entry / CONFIG_FILE).is_file():
            with contextlib.suppress(OSError):  # another process may have put it back first
                entry.rename(target)  # killed between its two renames: the previous cache is whole, put it back
        else:
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    return True


def save_atomically(features: DatasetDict, dataset_dir: str, meta: dict, keep_identical: bool = True) -> None:
    """Writes to a temporary folder and renames it, so a killed run never leaves a half cache.

    If another process (another node on shared storage) put the same dataset there meanwhile, its
    copy is kept and ours dropped (unless not keep_identical), so processes reading it never see it vanish.
    """
    target = Path(dataset_dir)
    tmp = scratch_path(dataset_dir, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        features.save_to_disk(str(tmp))
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        if keep_identical and _saved_config(target) == meta["config"]:
            shutil.rmtree(tmp)
        elif target.exists():
            old = scratch_path(dataset_dir, "old")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                tmp.rename(target)
            except OSError:
                if _saved_config(target) != meta["config"]:
                    raise
                shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _saved_config(dataset_dir: Path) -> dict | None:
    try:
        return json.loads((dataset_dir / CONFIG_FILE).read_text())["config"]
    except (OSError, ValueError, KeyError):
        return None


def format_stats(stats: dict) -> str:
    lines = []
    for split, s in stats.items():
        if split == "sentence_length_histogram":
            continue
        draws = f" x {s['draws']} draws" if s.get("draws", 1) > 1 else ""
        line = (f"{split:>10}: {s['documents']:,} documents, {s['sentences']:,} sentences, {s['tokens']:,} tokens -> "
                f"{s['examples']:,} examples{draws} (mean {s['mean_example_length']:.0f} tokens, "
                f"{100 * s['truncated_share']:.1f}% truncated")
        if "negative_share" in s:
            line += f", {100 * s['negative_share']:.1f}% negatives"
        lines.append(line + ")")
    return "\n".join(lines)
