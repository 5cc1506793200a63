"""Text files (or a Hub dataset) -> a `datasets.Dataset` of documents, one per row in column `text`."""

import glob
import os
import re
from pathlib import Path

from datasets import Dataset, load_dataset

from pipeline.errors import UsageError

BUILTIN_PYDOC = "builtin:pydoc-topics"
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def pydoc_topics_text() -> str:
    """The Python docs shipped with CPython as blank-line-separated documents, one prose paragraph a line.

    Headings, their underlines and indented blocks (grammar, code examples) are dropped: they are
    not sentences, and NSP pairs made of them would teach the model little.
    """
    from pydoc_data.topics import topics

    documents = []
    for name in sorted(topics):
        paragraphs = []
        for block in re.split(r"\n\s*\n", topics[name]):
            lines = [line for line in block.split("\n") if line.strip()]
            if not lines or lines[0].startswith((" ", "\t")):
                continue
            if len(lines) == 2 and re.fullmatch(r"[*=\-~^]+", lines[1].strip()):
                continue
            paragraphs.append(" ".join(line.strip() for line in lines))
        if paragraphs:
            documents.append("\n".join(paragraphs))
    return "\n\n".join(documents) + "\n"


def write_pydoc_corpus(directory: str) -> str:
    """Writes the pydoc corpus once; an unchanged file keeps its mtime so `datasets` caches stay valid."""
    path = Path(directory) / "pydoc-topics.txt"
    text = pydoc_topics_text()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return str(path)


def resolve_train_files(patterns: list[str], cache_dir: str | None = None) -> list[str]:
    """Expands globs and builtin: names into existing files; URLs are kept for `datasets` to fetch."""
    files = []
    for pattern in patterns:
        if pattern.startswith(("http://", "https://", "hf://")):
            files.append(pattern)  # `datasets` downloads and caches remote files itself
            continue
        if pattern == BUILTIN_PYDOC:
            from datasets.config import HF_DATASETS_CACHE

            files.append(write_pydoc_corpus(os.path.join(cache_dir or str(HF_DATASETS_CACHE), "corpora")))
            continue
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        matches = [m for m in matches if os.path.isfile(m)]
        if not matches:
            raise UsageError(f"train_file {pattern} matches no file; check the path or glob.")
        files += matches
    return files


def load_documents(
    train_files: list[str] | None,
    *,
    document_format: str = "line",
    text_column: str = "text",
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    cache_dir: str | None = None,
) -> Dataset:
    """Loads the corpus as one document per row, column `text`, empty documents dropped."""
    if dataset_name:
        ds = load_dataset(dataset_name, dataset_config_name, split="train", cache_dir=cache_dir)
        builder, column = None, text_column
    elif train_files:
        suffixes = {_BUILDERS.get(Path(f).suffix.lower(), "text") for f in train_files}
        if len(suffixes) > 1:
            raise UsageError(f"train_file mixes formats ({', '.join(sorted(suffixes))}); give files of one format.")
        builder = suffixes.pop()
        kwargs = {"sample_by": "paragraph" if document_format == "blank_line" else "line"} if builder == "text" else {}
        ds = load_dataset(builder, data_files={"train": train_files}, split="train", cache_dir=cache_dir, **kwargs)
        column = "text" if builder == "text" else text_column
    else:
        raise UsageError("no corpus given; set train_file (a path or glob) or dataset_name.")
    if column not in ds.column_names:
        raise UsageError(f"the data has no column '{column}' (it has {', '.join(ds.column_names)}); "
                         "pass --text_column with the right name.")
    ds = ds.select_columns([column])
    if column != "text":
        ds = ds.rename_column(column, "text")
    if builder == "text" and document_format == "blank_line":
        # `datasets` splits paragraphs on "\n\n" only; a line of spaces also separates documents.
        return ds.map(_split_blocks, batched=True, input_columns="text", desc="Splitting documents")
    return ds.filter(lambda texts: [bool(t and t.strip()) for t in texts], batched=True, input_columns="text")


def _split_blocks(texts: list[str]) -> dict[str, list[str]]:
    return {"text": [b.strip() for t in texts for b in _BLANK_LINE.split(t) if b.strip()]}
