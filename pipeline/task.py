"""A user's labelled file -> the train and test splits of their task, checked.

    bert-pretrain probe --task_file tickets.csv --model_name_or_path outputs/run --baseline_model BASE

The file is csv, jsonl/json or parquet with a text column (and optionally a second text column for pairs) and a
label column: a classification task. Or, with a tags column, a token classification task: each row's words (a
list, or a text split on whitespace) and one BIO tag per word (`O`, `B-TYPE`, `I-TYPE`; IOBES too). It is split by
a seeded shuffle (stratified per class for classification, so every class is in both parts) unless it has a split
column of its own (values `train` and `test`).
"""

import collections
import dataclasses
import os
import random
import re

from pipeline.errors import UsageError, first_line

FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# Fewer examples than this in a class leave a test part of one or two: a metric over that is noise.
MIN_PER_CLASS = 5
# A tag as seqeval reads it: O, or a scheme prefix and an entity type (B-PER, I-LOC, E-ORG, S-MISC, L-/U- too)
TAG = re.compile(r"O|[BIESLU]-\S+")


@dataclasses.dataclass
class TaskSplit:
    """One part of the task: texts, second texts (pairs) or None, and label ids into TaskData.label_names."""

    texts: list  # str per example; for token classification, a list of words
    text_pairs: list[str] | None
    labels: list  # a label id per example; for token classification, a list of tag ids per example


@dataclasses.dataclass
class TaskData:
    """The user's task: its name (the file's), kind, label (or tag) names, and train and test splits."""

    name: str
    label_names: list[str]
    train: TaskSplit
    test: TaskSplit
    kind: str = "classification"  # or "tokens": token classification

    def describe(self) -> str:
        if self.kind == "tokens":
            types = sorted({n[2:] for n in self.label_names if n != "O"})
            return (f"task {self.name}: token classification, {len(types)} entity types ({', '.join(types[:8])}), "
                    f"{len(self.train.labels):,} training and {len(self.test.labels):,} test sentences")
        return (f"task {self.name}: {len(self.label_names)} classes, {len(self.train.labels):,} training and "
                f"{len(self.test.labels):,} test examples")


def read_rows(task_file: str) -> list[dict]:
    """The file's rows as dicts, through `datasets` (which reads csv, json lines and parquet alike)."""
    from datasets import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars, load_dataset

    if not os.path.isfile(task_file):
        raise UsageError(f"task_file {task_file} does not exist; give a csv, jsonl or parquet file of labelled "
                         "examples.")
    kind = FORMATS.get(os.path.splitext(task_file)[1].lower())
    if kind is None:
        raise UsageError(f"task_file {task_file} is not csv, tsv, jsonl/json or parquet; give one of those.")
    options = {"delimiter": "\t"} if task_file.lower().endswith(".tsv") else {}
    quiet = are_progress_bars_disabled()
    disable_progress_bars()  # a small file: a bar of its conversion would only scroll the error or table away
    try:
        return load_dataset(kind, data_files=task_file, split="train", **options).to_list()
    except Exception as e:  # a malformed file: datasets' and Arrow's errors run to many lines
        raise UsageError(f"task_file {task_file} could not be read as {kind} ({first_line(e)}); fix the file.") \
            from None
    finally:
        if not quiet:
            enable_progress_bars()


def load_task(task_file: str, *, text_column: str = "text", text_pair_column: str | None = None,
              label_column: str = "label", tags_column: str | None = None, split_column: str | None = None,
              test_percentage: float = 20.0, seed: int = 42) -> TaskData:
    """The task in task_file, split into train and test, refused in one sentence if it cannot be measured.

    Args:
        task_file: a csv, tsv, jsonl/json or parquet file.
        text_column, text_pair_column, label_column: its columns (text_pair_column for sentence-pair tasks).
        tags_column: a column of BIO tags, one per word of text_column: token classification (label_column unused).
        split_column: a column of `train`/`test` values to use instead of a seeded split.
        test_percentage: share of each class held out for the test part, in percent.
        seed: seed of the split.
    """
    rows = read_rows(task_file)
    name = os.path.basename(task_file)
    if not rows:
        raise UsageError(f"task_file {task_file} has no rows; give labelled examples.")
    flags = {text_column: "text", text_pair_column: "text_pair", split_column: "split"}
    flags.update({tags_column: "tags"} if tags_column else {label_column: "label"})
    for column, flag in flags.items():
        if column and column not in rows[0]:
            raise UsageError(f"task_file {name} has no column '{column}' (it has {', '.join(rows[0])}); name the "
                             f"right one with --task_{flag}_column.")
    if tags_column:
        return load_token_task(rows, name, text_column, tags_column, split_column, test_percentage, seed)
    labels = [row[label_column] for row in rows]
    if any(label is None or str(label).strip() == "" for label in labels):
        raise UsageError(f"task_file {name} has rows without a label in '{label_column}'; label them or drop them.")
    if len({type(label) for label in labels}) > 1:
        raise UsageError(f"the labels in '{label_column}' of {name} mix numbers and words; use one kind.")
    seen: dict[tuple, object] = {}
    for row in rows:
        key = (row[text_column], row[text_pair_column] if text_pair_column else None)
        if seen.setdefault(key, row[label_column]) != row[label_column]:
            raise UsageError(f"task_file {name} gives the same text two labels ({seen[key]!r} and "
                             f"{row[label_column]!r}): {str(key[0])[:60]!r}; keep one.")
    label_names = sorted({str(label) for label in labels}, key=lambda s: (len(s), s) if s.isdigit() else (0, s))
    if len(label_names) < 2:
        raise UsageError(f"task_file {name} has one class only ({label_names[0]!r}); a task needs two or more.")
    counts = {n: sum(str(label) == n for label in labels) for n in label_names}
    if small := [n for n, c in counts.items() if c < MIN_PER_CLASS]:
        raise UsageError(f"task_file {name} has fewer than {MIN_PER_CLASS} examples of class "
                         f"{', '.join(repr(n) for n in small[:5])}; add examples or merge the class.")
    ids = {n: i for i, n in enumerate(label_names)}

    # Split: the file's own, or a seeded per-class shuffle so each class is in both parts
    strata = [[row for row in rows if str(row[label_column]) == label] for label in label_names]
    parts = split_rows(rows, strata, name, split_column, test_percentage, seed)

    def split(part: list[dict]) -> TaskSplit:
        return TaskSplit(texts=[str(r[text_column]) for r in part],
                         text_pairs=[str(r[text_pair_column]) for r in part] if text_pair_column else None,
                         labels=[ids[str(r[label_column])] for r in part])

    return TaskData(name=name, label_names=label_names, train=split(parts["train"]), test=split(parts["test"]))


def split_rows(rows: list[dict], strata: list[list[dict]], name: str, split_column: str | None,
               test_percentage: float, seed: int) -> dict[str, list[dict]]:
    """{"train": rows, "test": rows}: the file's split column's, else test_percentage of each stratum, shuffled by
    seed."""
    parts = {"train": [], "test": []}
    if split_column:
        for row in rows:
            part = str(row[split_column]).strip().lower()
            if part not in parts:
                raise UsageError(f"split column '{split_column}' of {name} has the value {part!r}; use train or "
                                 "test.")
            parts[part].append(row)
    else:
        if not 0 < test_percentage < 100:
            raise UsageError(f"task_test_percentage is {test_percentage}; give a value between 0 and 100.")
        rng = random.Random(seed)
        for members in strata:
            members = list(members)
            rng.shuffle(members)
            n_test = max(1, round(len(members) * test_percentage / 100))
            parts["test"] += members[:n_test]
            parts["train"] += members[n_test:]
        for part in parts.values():
            rng.shuffle(part)
    if not parts["train"] or not parts["test"]:
        raise UsageError(f"the split of {name} leaves no {'test' if parts['train'] else 'training'} examples; "
                         "give both train and test rows.")
    return parts


def load_token_task(rows: list[dict], name: str, text_column: str, tags_column: str, split_column: str | None,
                    test_percentage: float, seed: int) -> TaskData:
    """A token classification task: each row's words and their BIO tags, checked, split by rows."""
    examples = []
    for number, row in enumerate(rows, 1):
        words, tags = row[text_column], row[tags_column]
        words = words.split() if isinstance(words, str) else words
        if isinstance(tags, str):  # a csv cell: tags separated by spaces
            tags = tags.split()
        if not isinstance(words, list) or not isinstance(tags, list) or not words:
            raise UsageError(f"row {number} of {name} has no words in '{text_column}' or no list of tags in "
                             f"'{tags_column}'; give a list (or a space-separated text) of each.")
        if len(words) != len(tags):
            raise UsageError(f"row {number} of {name} has {len(words)} words and {len(tags)} tags; give one tag per "
                             "word.")
        bad = [t for t in tags if not isinstance(t, str) or not TAG.fullmatch(t)]
        if bad:
            raise UsageError(f"row {number} of {name} has the tag {bad[0]!r}, which is not BIO; tag each word O, "
                             "B-TYPE or I-TYPE (tag names, not numbers).")
        examples.append({**row, text_column: [str(w) for w in words], tags_column: tags})
    from seqeval.metrics.sequence_labeling import get_entities  # entities as the metric will count them

    entities = collections.Counter(kind for row in examples for kind, _, _ in get_entities(row[tags_column]))
    if not entities:
        raise UsageError(f"task_file {name} tags no entity (every tag is O); tag each entity's words B-TYPE, "
                         "I-TYPE.")
    if small := [t for t, c in entities.items() if c < MIN_PER_CLASS]:
        raise UsageError(f"task_file {name} has fewer than {MIN_PER_CLASS} entities of type "
                         f"{', '.join(repr(t) for t in sorted(small)[:5])}; tag more or merge the type.")
    label_names = ["O"] + sorted({t for row in examples for t in row[tags_column]} - {"O"}, key=lambda t: (t[2:], t))
    ids = {n: i for i, n in enumerate(label_names)}
    parts = split_rows(examples, [examples], name, split_column, test_percentage, seed)

    def split(part: list[dict]) -> TaskSplit:
        return TaskSplit(texts=[r[text_column] for r in part], text_pairs=None,
                         labels=[[ids[t] for t in r[tags_column]] for r in part])

    return TaskData(name=name, label_names=label_names, train=split(parts["train"]), test=split(parts["test"]),
                    kind="tokens")
