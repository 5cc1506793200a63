"""A user's labelled file -> the train and test splits of their task, checked.

    bert-pretrain probe --task_file tickets.csv --model_name_or_path outputs/run --baseline_model BASE

The file is csv, jsonl/json or parquet with a text column (and optionally a second text column for pairs) and a
label column. It is split by a seeded shuffle, stratified per class so every class is in both parts, unless it has
a split column of its own (values `train` and `test`).
"""

import dataclasses
import os
import random

from pipeline.errors import UsageError, first_line

FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# Fewer examples than this in a class leave a test part of one or two: a metric over that is noise.
MIN_PER_CLASS = 5


@dataclasses.dataclass
class TaskSplit:
    """One part of the task: texts, second texts (pairs) or None, and label ids into TaskData.label_names."""

    texts: list[str]
    text_pairs: list[str] | None
    labels: list[int]


@dataclasses.dataclass
class TaskData:
    """The user's task: its name (the file's), label names, and train and test splits."""

    name: str
    label_names: list[str]
    train: TaskSplit
    test: TaskSplit

    def describe(self) -> str:
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
              label_column: str = "label", split_column: str | None = None, test_percentage: float = 20.0,
              seed: int = 42) -> TaskData:
    """The task in task_file, split into train and test, refused in one sentence if it cannot be measured.

    Args:
        task_file: a csv, tsv, jsonl/json or parquet file.
        text_column, text_pair_column, label_column: its columns (text_pair_column for sentence-pair tasks).
        split_column: a column of `train`/`test` values to use instead of a seeded split.
        test_percentage: share of each class held out for the test part, in percent.
        seed: seed of the split.
    """
    rows = read_rows(task_file)
    name = os.path.basename(task_file)
    if not rows:
        raise UsageError(f"task_file {task_file} has no rows; give labelled examples.")
    columns = [c for c in (text_column, text_pair_column, label_column, split_column) if c]
    for column in columns:
        if column not in rows[0]:
            raise UsageError(f"task_file {name} has no column '{column}' (it has {', '.join(rows[0])}); name the "
                             f"right one with --task_{'label' if column == label_column else 'text'}_column.")
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
    if split_column:
        parts = {"train": [], "test": []}
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
        parts = {"train": [], "test": []}
        for label in label_names:
            members = [row for row in rows if str(row[label_column]) == label]
            rng.shuffle(members)
            n_test = max(1, round(len(members) * test_percentage / 100))
            parts["test"] += members[:n_test]
            parts["train"] += members[n_test:]
        for part in parts.values():
            rng.shuffle(part)
    if not parts["train"] or not parts["test"]:
        raise UsageError(f"the split of {name} leaves no {'test' if parts['train'] else 'training'} examples; "
                         "give both train and test rows.")

    def split(part: list[dict]) -> TaskSplit:
        return TaskSplit(texts=[str(r[text_column]) for r in part],
                         text_pairs=[str(r[text_pair_column]) for r in part] if text_pair_column else None,
                         labels=[ids[str(r[label_column])] for r in part])

    return TaskData(name=name, label_names=label_names, train=split(parts["train"]), test=split(parts["test"]))
