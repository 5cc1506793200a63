"""Text files (or a Hub dataset) -> a `datasets.Dataset` of documents, one per row in column `text`."""

import codecs
import glob
import lzma
import os
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, Value, concatenate_datasets, load_dataset
from datasets.exceptions import DatasetGenerationError

from pipeline.errors import UsageError, first_line, is_disk_full

BUILTIN_PYDOC = "builtin:pydoc-topics"
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
# The `datasets` builder for a file's format, told by its name less any compression suffix; other names are text.
_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
COMPRESSIONS = (".gz", ".bz2", ".xz")  # `datasets` decompresses these as it reads, with the standard library
# Archives (several files) and compressions `datasets` reads only with packages we do not install.
UNREAD_SUFFIXES = (".zst", ".lz4", ".zip", ".tar", ".tgz", ".7z", ".rar")
# A file where most rows have no text in the column is more likely read with the wrong --text_column (or of
# another layout) than a corpus with gaps: training on the few rows that have one would mislead.
MAX_MISSING_TEXT_SHARE = 0.5
# How the json and csv loaders say a file has no row (json: also a bare StopIteration).
_NO_ROWS_TEXTS = ("corresponds to no data", "No columns to parse")


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


def file_format(path: str) -> str:
    """The `datasets` builder that reads `path` ("text", "json", "csv" or "parquet"), from its name less any
    compression suffix (`notes.jsonl.gz` is json)."""
    name = Path(path).name.lower()
    stem = name.removesuffix(next((c for c in COMPRESSIONS if name.endswith(c)), ""))
    if unread := next((s for s in UNREAD_SUFFIXES if name.endswith(s) or stem.endswith(s)), None):
        raise UsageError(f"train_file {path} is a {unread} file, which is not read; unpack it, or compress each "
                         "file with gzip, bz2 or xz (e.g. notes.jsonl.gz).")
    return _BUILDERS.get(Path(stem).suffix, "text")


def check_text_files(files: list[str], chunk_size: int = 1 << 20) -> None:
    """Refuses, with the fix, text that is not UTF-8, looks binary, or is only whitespace.

    `datasets` would otherwise fail deep in its loader with a traceback (or, for an empty corpus,
    later with a puzzling count); one streaming pass costs about a second per 500 MB. Compressed and
    parquet files are left to `datasets`, whose errors `load_documents` turns into one sentence.
    """
    has_text, all_checked = False, True
    for path in files:
        if not os.path.isfile(path) or file_format(path) == "parquet" or path.lower().endswith(COMPRESSIONS):
            all_checked = False  # URLs are read by `datasets`; parquet and compressed files are binary by design
            continue
        decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
        with open(path, "rb") as f:
            while chunk := f.read(chunk_size):
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as e:  # e.object is the decoder's pending bytes + this chunk
                    at = offset + e.start - (len(e.object) - len(chunk))
                    raise UsageError(f"train_file {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                                     f"{at:,}); convert it to UTF-8, e.g. `iconv -f latin1 -t utf-8`, "
                                     "or give the right file.") from None
                if "\x00" in text:
                    raise UsageError(f"train_file {path} contains NUL bytes, so it is binary, not text; give a text, "
                                     "jsonl, csv or parquet file.")
                has_text = has_text or not text.isspace()
                offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise UsageError(f"train_file {path} ends in the middle of a UTF-8 character; it is truncated or "
                             "not UTF-8: convert it to UTF-8 or give the right file.") from None
    if files and not has_text and all_checked:
        raise UsageError(f"train_file {_name(files)} has no text (empty or only whitespace); give a corpus with text.")


def load_documents(
    train_files: list[str] | None,
    *,
    document_format: str = "line",
    text_column: str = "text",
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    cache_dir: str | None = None,
    work_dir: str | None = None,
) -> Dataset:
    """Loads the corpus as one document per row, column `text`, empty documents dropped.

    Text files give a document per line (or per blank-line-separated block, with `document_format`
    "blank_line"); jsonl, csv and parquet files and Hub datasets one per row of `text_column`. Files may
    be gzip, bz2 or xz-compressed, and of several formats at once. Rows of a table without text are
    counted and reported on stderr (stdout may be `inspect --format jsonl`), and refused above
    MAX_MISSING_TEXT_SHARE of a file. With `work_dir`, the tables derived from the loaded corpus are
    written there, not to the `datasets` cache.
    """
    lines, tables = [], []  # the text files, read as one table of lines (or paragraphs); each table's text column
    if dataset_name:
        ds = load_dataset(dataset_name, dataset_config_name, split="train", cache_dir=cache_dir)
        tables.append(_text_column(ds, text_column, f"dataset {dataset_name}"))
    elif train_files:
        formats = {path: file_format(path) for path in train_files}
        if text_files := [path for path in train_files if formats[path] == "text"]:
            # 1 MB reads keep the loader's memory small and flat (its default reads 10 MB at a time, in copies).
            lines.append(_load("text", text_files, cache_dir, chunksize=1 << 20,
                               sample_by="paragraph" if document_format == "blank_line" else "line"))
        # One load per table: `datasets` would cast every file of a load to the first one's columns and types.
        tables += [_text_column(_load(formats[path], [path], cache_dir), text_column, f"train_file {path}")
                   for path in train_files if formats[path] != "text"]
    else:
        raise UsageError("no corpus given; set train_file (a path or glob) or dataset_name.")

    def cache_file(name: str) -> str | None:
        return os.path.join(work_dir, name) if work_dir else None

    documents = []
    if lines and document_format == "blank_line":
        # `datasets` splits paragraphs on "\n\n" only; a line of spaces also separates documents.
        documents.append(lines.pop().map(_split_blocks, batched=True, input_columns="text",
                                         desc="Splitting documents", cache_file_name=cache_file("paragraphs.arrow")))
    if rows := [ds for ds in lines + tables if len(ds)]:
        if len(rows) > 1:  # concatenation needs one type: csv (and some parquet) give large_string
            rows = [ds if ds.features["text"] == Value("string") else
                    ds.cast(Features({"text": Value("string")}), cache_file_name=cache_file(f"text-{i}.arrow"))
                    for i, ds in enumerate(rows)]
        rows = concatenate_datasets(rows) if len(rows) > 1 else rows[0]
        documents.append(rows.with_format("arrow").filter(
            _has_text, batched=True, input_columns="text", cache_file_name=cache_file("documents.arrow"),
        ).with_format(None))
    ds = concatenate_datasets(documents) if len(documents) > 1 else documents[0] if documents else None
    if ds is None or len(ds) == 0:
        where = f"dataset {dataset_name}" if dataset_name else f"train_file {_name(train_files)}"
        raise UsageError(f"{where} has no text (empty or only whitespace); give a corpus with text.")
    return ds


def _load(builder: str, files: list[str], cache_dir: str | None, **kwargs) -> Dataset:
    try:
        return load_dataset(builder, data_files={"train": files}, split="train", cache_dir=cache_dir, **kwargs)
    except (DatasetGenerationError, OSError, EOFError, lzma.LZMAError, ValueError, StopIteration) as e:
        # `datasets` wraps what fails while it writes the table, not what fails as it reads the first rows
        # (to infer their columns) or a parquet file's schema: a damaged, truncated, misnamed or empty file.
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if is_disk_full(cause):
            raise  # not the file's fault: reported as a full disk
        if isinstance(cause, StopIteration) or any(text in str(cause) for text in _NO_ROWS_TEXTS):
            raise UsageError(f"train_file {', '.join(files)} has no rows (empty or only whitespace); give it rows "
                             "with text, or leave it out.") from None
        raise UsageError(f"train_file {', '.join(files)} could not be read as {builder} ({first_line(cause)}); "
                         "fix the file, or give one in the format its name says.") from None


def _text_column(ds: Dataset, column: str, source: str) -> Dataset:
    """The table's `column` as `text`: refused when missing, not text, or too often empty; its gaps reported."""
    if column not in ds.column_names:
        raise UsageError(f"{source} has no column '{column}' (it has {', '.join(ds.column_names)}); "
                         "pass --text_column with the right name.")
    ds = ds.select_columns([column])
    values = ds.data.column(column)
    if values.null_count == len(ds):
        with_text = 0  # a column with no value at all is typed null (json) or float (csv): empty, not mistyped
    elif ds.features[column] not in (Value("string"), Value("large_string")):
        raise UsageError(f"column '{column}' of {source} holds {_kind(ds.features[column])}, not text; pass "
                         "--text_column with the column that holds the text, or write its values as strings.")
    else:
        with_text = sum(pc.sum(_has_text(chunk)).as_py() or 0 for chunk in values.chunks)
    if missing := len(ds) - with_text:
        share = f"{missing:,} of {len(ds):,} rows of {source.removeprefix('train_file ')}"
        if missing > MAX_MISSING_TEXT_SHARE * len(ds):
            raise UsageError(f"{share} have no text in column '{column}' (null, missing or empty), more than "
                             f"{MAX_MISSING_TEXT_SHARE:.0%}; pass --text_column with the column that holds the text, "
                             "or remove those rows.")
        print(f"skipped {share} with no text in column '{column}'", file=sys.stderr)
    return ds.rename_column(column, "text") if column != "text" else ds


def _has_text(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """True for each value that is neither null, nor empty, nor only whitespace (one test to count and to drop)."""
    return pc.fill_null(pc.and_(pc.greater(pc.utf8_length(texts), 0), pc.invert(pc.utf8_is_space(texts))), False)


def _kind(feature) -> str:
    """What a non-text column holds, in a user's words."""
    if isinstance(feature, Value):
        return f"numbers ({feature.dtype})" if re.match(r"u?int|float|double|decimal", feature.dtype) else \
            f"{feature.dtype} values"
    if isinstance(feature, dict):
        return "objects"
    if type(feature).__name__ == "Json":  # a json column of mixed types: `datasets` keeps each value encoded
        return "values of mixed types"
    return "lists" if type(feature).__name__ in ("List", "LargeList", "Sequence") else type(feature).__name__


def _name(files: list[str]) -> str:
    return files[0] if len(files) == 1 else f"{len(files)} files ({files[0]}, ...)"


def _split_blocks(texts: list[str]) -> dict[str, list[str]]:
    return {"text": [b.strip() for t in texts for b in _BLANK_LINE.split(t) if b.strip()]}
