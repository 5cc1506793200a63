import bz2
import csv
import glob
import gzip
import json
import lzma
import os
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.__main__ import main
from pipeline.corpus import (check_text_files, load_documents, pydoc_topics_text, resolve_train_files,
                             write_pydoc_corpus)
from pipeline.errors import UsageError
from pipeline.prepare import prepare_dataset
from tests.conftest import make_documents

OPEN = {"": open, ".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
# One document a row; without newlines, so a text file holds them one a line too.
ROWS = ['First document. It has "quotes", commas, and two sentences.', "Second one; \u00e9t\u00e9 \u00e0 Z\u00fcrich.",
        "Third: a, b, c."]
FORMATS = [f"c.{kind}{compression}" for kind in ("txt", "jsonl", "json", "csv") for compression in OPEN] + ["c.parquet"]


def write_corpus(path: Path, rows: list, column: str = "text") -> str:
    """`rows` as a file of the format its name says, compressed as its suffix says (a text file: one a line)."""
    compression = next((c for c in OPEN if c and path.name.endswith(c)), "")
    kind = Path(path.name.removesuffix(compression)).suffix
    if kind == ".parquet":
        pq.write_table(pa.table({"id": list(range(len(rows))), column: rows}), path)
        return str(path)
    with OPEN[compression](path, "wt", encoding="utf-8", newline="") as f:
        if kind == ".csv":
            csv.writer(f).writerows([("id", column), *enumerate(rows)])
        elif kind in (".jsonl", ".json"):
            f.writelines(json.dumps({"id": i, column: row}) + "\n" for i, row in enumerate(rows))
        else:
            f.write("\n".join(rows) + "\n")
    return str(path)


def test_pydoc_corpus_is_prose_and_written_once(tmp_path):
    text = pydoc_topics_text()
    documents = text.strip().split("\n\n")
    assert len(documents) > 50 and len(text) > 200_000
    assert "****" not in text and "\n    " not in text  # no heading underlines, no indented code blocks
    path = write_pydoc_corpus(str(tmp_path))
    mtime = os.path.getmtime(path)
    assert write_pydoc_corpus(str(tmp_path)) == path and os.path.getmtime(path) == mtime


def test_line_and_blank_line_formats(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("First doc. Second sentence.\nSecond doc here.\n\n   \nThird doc.\n", encoding="utf-8")
    assert load_documents([str(path)], document_format="line")["text"][:] == [
        "First doc. Second sentence.", "Second doc here.", "Third doc."]
    blocks = load_documents([str(path)], document_format="blank_line")["text"][:]
    assert blocks == ["First doc. Second sentence.\nSecond doc here.", "Third doc."]


def test_jsonl_with_text_column(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps({"body": t, "id": i}) for i, t in enumerate(["A b. C d.", "E f."])))
    assert load_documents([str(path)], text_column="body")["text"][:] == ["A b. C d.", "E f."]
    with pytest.raises(UsageError, match="no column 'text'.*--text_column"):
        load_documents([str(path)])


def test_globs_and_missing_files(tmp_path):
    for name in ("b.txt", "a.txt"):
        (tmp_path / name).write_text("x\n")
    assert resolve_train_files([str(tmp_path / "*.txt")]) == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    with pytest.raises(UsageError, match="matches no file"):
        resolve_train_files([str(tmp_path / "missing.txt")])
    assert resolve_train_files(["builtin:pydoc-topics"], cache_dir=str(tmp_path))[0].endswith("pydoc-topics.txt")


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_and_compression_loads_the_same_documents(name, tmp_path):
    path = write_corpus(tmp_path / name, ROWS)
    check_text_files([path])
    assert load_documents([path], cache_dir=str(tmp_path / "cache"))["text"][:] == ROWS


def test_formats_mixed_in_one_corpus(tmp_path):
    rows = {name: [f"{row} ({name})" for row in ROWS] for name in FORMATS}
    files = [write_corpus(tmp_path / name, rows[name]) for name in FORMATS]
    check_text_files(files)
    documents = load_documents(files, cache_dir=str(tmp_path / "cache"))["text"][:]
    assert Counter(documents) == Counter(row for name in FORMATS for row in rows[name])
    # A blank line ends a document of a text file; a table's row is a document whatever it holds.
    documents = load_documents(files, document_format="blank_line", cache_dir=str(tmp_path / "cache"))["text"][:]
    assert Counter(documents) == Counter(["\n".join(rows[name]) for name in FORMATS if ".txt" in name] +
                                         [row for name in FORMATS if ".txt" not in name for row in rows[name]])


def test_real_text_reads_alike_in_every_format(tmp_path):
    """The Python docs and the licence texts (quotes, commas, newlines, non-ASCII) as rows and as text files."""
    licences = [Path(p).read_text(encoding="utf-8") for p in sorted(glob.glob("/usr/share/common-licenses/*"))
                if os.path.isfile(p)]
    rows = pydoc_topics_text().split("\n\n") + licences
    assert len(rows) > 80
    cache = str(tmp_path / "cache")
    for name in ("real.jsonl.gz", "real.json.xz", "real.csv.bz2", "real.parquet"):
        path = write_corpus(tmp_path / name, rows)
        assert load_documents([path], cache_dir=cache)["text"][:] == [row for row in rows if row.strip()], name
    plain = tmp_path / "real.txt"
    plain.write_text("\n\n".join(rows), encoding="utf-8")
    with lzma.open(tmp_path / "real.txt.xz", "wt", encoding="utf-8") as f:
        f.write("\n\n".join(rows))
    for document_format in ("line", "blank_line"):
        expected = load_documents([str(plain)], document_format=document_format, cache_dir=cache)["text"][:]
        assert len(expected) > len(rows)
        assert load_documents([str(tmp_path / "real.txt.xz")], document_format=document_format,
                              cache_dir=cache)["text"][:] == expected


@pytest.mark.parametrize("name", ["c.jsonl", "c.csv.gz", "c.parquet"])
def test_rows_without_text_are_counted_and_reported_or_refused_above_half(name, tmp_path, capsys):
    # jsonl: null, missing, empty, whitespace; csv: empty cells; parquet: nulls, empty, whitespace.
    gaps = [None, "", " \t", None]
    path = write_corpus(tmp_path / name, ["A b. C d.", gaps[0], "E f.", gaps[1], "G h.", gaps[2], "I j.",
                                          gaps[3], "K l."])
    if name == "c.jsonl":
        Path(path).write_text(Path(path).read_text().replace('{"id": 7, "text": null}', '{"id": 7}'))
    assert load_documents([path], cache_dir=str(tmp_path / "cache"))["text"][:] == [
        "A b. C d.", "E f.", "G h.", "I j.", "K l."]
    assert f"skipped 4 of 9 rows of {path} with no text in column 'text'" in capsys.readouterr().err.splitlines()
    path = write_corpus(tmp_path / f"more-{name}", ["A b. C d.", None, "", None, "E f."])
    with pytest.raises(UsageError, match=re.escape(f"3 of 5 rows of {path} have no text in column 'text' (null, "
                                                   "missing or empty), more than 50%; pass --text_column")):
        load_documents([path], cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("name, values, kind", [
    ("c.jsonl", [1, 2], "numbers (int64)"), ("c.jsonl.gz", [1.5, 2.0], "numbers (float64)"),
    ("c.jsonl", [["A b."], ["C d."]], "lists"), ("c.jsonl", [{"a": "A b."}], "objects"),
    ("c.jsonl", ["A b.", 3], "values of mixed types"), ("c.csv", [1, 2], "numbers (int64)"),
    ("c.parquet", [True, False], "bool values"),
])
def test_a_text_column_of_another_type_is_one_sentence(name, values, kind, tmp_path):
    path = write_corpus(tmp_path / name, values)
    with pytest.raises(UsageError, match=re.escape(f"column 'text' of train_file {path} holds {kind}, not text; "
                                                   "pass --text_column with the column that holds the text")):
        load_documents([path], cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("name", ["c.parquet", "c.csv.gz", "c.jsonl.bz2"])
def test_a_missing_text_column_names_the_columns_there(name, tmp_path):
    path = write_corpus(tmp_path / name, ROWS, column="body")
    with pytest.raises(UsageError, match=re.escape(f"train_file {path} has no column 'text' (it has id, body); "
                                                   "pass --text_column")):
        load_documents([path], cache_dir=str(tmp_path / "cache"))
    assert load_documents([path], text_column="body", cache_dir=str(tmp_path / "cache"))["text"][:] == ROWS


def _gzip_cut(text: str) -> bytes:
    data = gzip.compress(text.encode())
    return data[:len(data) // 2]


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt.gz", gzip.compress(b" \n\n\t\n"), r"has no text \(empty or only whitespace\)"),
    ("empty.jsonl.xz", lzma.compress(b""), r"has no rows \(empty or only whitespace\); give it rows with text"),
    ("blank.csv.gz", gzip.compress(b"id,text\n"), r"has no rows \(empty or only whitespace\)"),
    ("c.jsonl.zst", b"(\xb5/\xfd", r"is a \.zst file, which is not read; unpack it, or compress each file with gzip"),
    ("c.tar.gz", gzip.compress(b"x"), r"c\.tar\.gz is a \.tar file, which is not read; unpack it"),
    ("plain.jsonl.gz", b'{"text": "A b."}\n', r"could not be read as json \(Not a gzipped file"),
    ("cut.jsonl.gz", _gzip_cut('{"text": "A b."}\n' * 50), r"could not be read as json \(Compressed file ended"),
    ("latin1.txt.bz2", bz2.compress("caf\xe9.\n".encode("latin-1")), r"could not be read as text \(.*utf-8"),
    ("garbage.parquet", bytes(range(256)), r"could not be read as parquet \(Parquet magic bytes"),
])
def test_damaged_empty_or_unread_files_are_one_sentence(name, content, message, tmp_path):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        check_text_files([str(path)])
        load_documents([str(path)], cache_dir=str(tmp_path / "cache"))


def test_the_prepared_dataset_follows_a_compressed_corpus(tokenizer, tmp_path):
    corpus, dataset_dir = tmp_path / "c.jsonl.gz", str(tmp_path / "d")
    write_corpus(corpus, make_documents(40))
    _, stats, *_ = prepare_dataset(tokenizer, train_files=[str(corpus)], dataset_dir=dataset_dir, max_seq_length=32)
    write_corpus(corpus, make_documents(40, seed=1))
    _, other, *_ = prepare_dataset(tokenizer, train_files=[str(corpus)], dataset_dir=dataset_dir, max_seq_length=32)
    assert other != stats
    # A cache from before compressed tables were read as tables (their JSON as text) is not reused.
    saved = Path(dataset_dir) / "prepare.json"
    old = json.loads(saved.read_text())
    old["config"]["files"] = [entry[:3] for entry in old["config"]["files"]]
    old["stats"]["train"]["documents"] = -1
    saved.write_text(json.dumps(old))
    assert prepare_dataset(tokenizer, train_files=[str(corpus)], dataset_dir=dataset_dir, max_seq_length=32)[1] == other


@pytest.mark.parametrize("name, rows, code, line", [
    ("gaps.jsonl.gz", make_documents(30) + [None] * 3, 0, r"^skipped 3 of 33 rows of .*gaps\.jsonl\.gz with no text"),
    ("numbers.jsonl.gz", [1, 2, 3], 2, r"prepare: error: column 'text' of train_file .* holds numbers"),
    ("mostly-null.csv.xz", ["A b. C d."] + [None] * 2, 2, r"prepare: error: 2 of 3 rows of .*more than 50%"),
])
def test_the_command_line_reports_rows_and_types(name, rows, code, line, tiny_model_dir, tmp_path, capsys):
    path = write_corpus(tmp_path / name, rows)
    assert main(["prepare", "--model_name_or_path", tiny_model_dir, "--train_file", path, "--max_seq_length", "32",
                 "--dataset_dir", str(tmp_path / "d"), "--output_dir", str(tmp_path / "out")]) == code
    ours = [s for s in capsys.readouterr().err.splitlines() if s.startswith(("bert-pretrain", "skipped"))]
    assert len(ours) == 1 and re.search(line, ours[0]), ours
    assert os.path.isdir(tmp_path / "d") == (code == 0)
