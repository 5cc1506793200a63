"""Text files (or a Hub dataset) -> a `datasets.Dataset` of documents, one per row in column `text`."""

import codecs
import glob
import os
import re
from pathlib import Path

from datasets import Dataset, load_dataset
from datasets.exceptions import DatasetGenerationError

from pipeline.errors import UsageError, first_line, is_disk_full

BUILTIN_PYDOC = "builtin:pydoc-topics"
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
BINARY_SUFFIXES = {".parquet", ".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4"}  # `datasets` decompresses these


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


def check_text_files(files: list[str], chunk_size: int = 1 << 20) -> None:
    """Refuses, with the fix, text that is not UTF-8, looks binary, or is only whitespace.

    `datasets` would otherwise fail deep in its loader with a traceback (or, for an empty corpus,
    later with a puzzling count); one streaming pass costs about a second per 500 MB.
    """
    has_text = False
    for path in files:
        if not os.path.isfile(path) or Path(path).suffix.lower() in BINARY_SUFFIXES:
            continue  # URLs are read by `datasets`; parquet and compressed files are binary by design
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
    if files and not has_text and all(os.path.isfile(f) for f in files):
        which = files[0] if len(files) == 1 else f"{len(files)} files ({files[0]}, ...)"
        raise UsageError(f"train_file {which} has no text (empty or only whitespace); give a corpus with text.")


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

    With `work_dir`, the tables derived from the loaded corpus are written there, not to the `datasets` cache.
    """
    if dataset_name:
        ds = load_dataset(dataset_name, dataset_config_name, split="train", cache_dir=cache_dir)
        builder, column = None, text_column
    elif train_files:
        suffixes = {_BUILDERS.get(Path(f).suffix.lower(), "text") for f in train_files}
        if len(suffixes) > 1:
            raise UsageError(f"train_file mixes formats ({', '.join(sorted(suffixes))}); give files of one format.")
        builder = suffixes.pop()
        # 1 MB reads keep the loader's memory small and flat (its default reads 10 MB at a time, in several copies).
        kwargs = {"sample_by": "paragraph" if document_format == "blank_line" else "line",
                  "chunksize": 1 << 20} if builder == "text" else {}
        try:
            ds = load_dataset(builder, data_files={"train": train_files}, split="train", cache_dir=cache_dir, **kwargs)
        except DatasetGenerationError as e:
            cause = e
            while cause.__cause__ is not None:
                cause = cause.__cause__
            if is_disk_full(cause):
                raise  # not the file's fault: reported as a full disk
            raise UsageError(f"train_file {', '.join(train_files)} could not be read as {builder} "
                             f"({first_line(cause)}); "
                             "fix the file, or give one in the format its name says.") from None
        column = "text" if builder == "text" else text_column
    else:
        raise UsageError("no corpus given; set train_file (a path or glob) or dataset_name.")
    if column not in ds.column_names:
        raise UsageError(f"the data has no column '{column}' (it has {', '.join(ds.column_names)}); "
                         "pass --text_column with the right name.")
    ds = ds.select_columns([column])
    if column != "text":
        ds = ds.rename_column(column, "text")
    cache_file_name = os.path.join(work_dir, "documents.arrow") if work_dir else None
    if builder == "text" and document_format == "blank_line":
        # `datasets` splits paragraphs on "\n\n" only; a line of spaces also separates documents.
        return ds.map(_split_blocks, batched=True, input_columns="text", desc="Splitting documents",
                      cache_file_name=cache_file_name)
    return ds.filter(lambda texts: [bool(t and t.strip()) for t in texts], batched=True, input_columns="text",
                     cache_file_name=cache_file_name)


def _split_blocks(texts: list[str]) -> dict[str, list[str]]:
    return {"text": [b.strip() for t in texts for b in _BLANK_LINE.split(t) if b.strip()]}
