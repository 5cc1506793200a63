import json
import os

import pytest

from pipeline.corpus import load_documents, pydoc_topics_text, resolve_train_files, write_pydoc_corpus
from pipeline.errors import UsageError


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
