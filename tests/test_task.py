"""pipeline/task.py: a labelled file -> checked train/test splits; bad files refused in one sentence."""

import pytest

from pipeline.errors import UsageError
from pipeline.task import MIN_PER_CLASS, load_task
from tests.conftest import source_rows, write_jsonl


def test_split_is_stratified_seeded_and_complete(tmp_path):
    path = write_jsonl(tmp_path / "task.jsonl", source_rows())
    task = load_task(path, seed=1)
    assert task.label_names == ["domain", "general"]
    assert len(task.train.labels) + len(task.test.labels) == 40
    assert sorted(task.test.labels) == [0, 0, 0, 0, 1, 1, 1, 1]  # 20% of each class
    assert not set(task.train.texts) & set(task.test.texts)
    assert load_task(path, seed=1) == task and load_task(path, seed=2).test.texts != task.test.texts


def test_csv_pairs_and_own_split_column(tmp_path):
    rows = [{"a": f"river {i}", "b": f"stone {i}", "y": i % 2, "part": "test" if i < 10 else "train"}
            for i in range(30)]
    path = tmp_path / "task.csv"
    path.write_text("a,b,y,part\n" + "".join(f"{r['a']},{r['b']},{r['y']},{r['part']}\n" for r in rows))
    task = load_task(str(path), text_column="a", text_pair_column="b", label_column="y", split_column="part")
    assert task.label_names == ["0", "1"] and len(task.test.labels) == 10
    assert task.test.texts[0] == "river 0" and task.test.text_pairs[0] == "stone 0" and task.test.labels[0] == 0


@pytest.mark.parametrize("rows, fragment", [
    ([{"text": "a", "category": "x"}], "no column 'label'"),
    ([{"text": f"t{i}", "label": "x"} for i in range(20)], "one class only"),
    ([{"text": f"t{i}", "label": "x" if i < 20 else "y"} for i in range(20 + MIN_PER_CLASS - 1)],
     f"fewer than {MIN_PER_CLASS} examples of class 'y'"),
    ([{"text": f"t{i % 15}", "label": "x" if i < 15 else "y"} for i in range(30)], "the same text two labels"),
    ([{"text": f"t{i}", "label": "x" if i < 10 else ("y" if i < 19 else "")} for i in range(20)], "without a label"),
])
def test_bad_files_are_refused_in_one_sentence(tmp_path, rows, fragment):
    with pytest.raises(UsageError, match=fragment) as error:
        load_task(write_jsonl(tmp_path / "task.jsonl", rows))
    assert "\n" not in str(error.value) and str(error.value).endswith(".")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_task(str(tmp_path / "nope.csv"))
    (tmp_path / "task.txt").write_text("text\n")
    with pytest.raises(UsageError, match="not csv"):
        load_task(str(tmp_path / "task.txt"))


def test_tags_file_is_token_classification(tmp_path):
    rows = [{"words": f"the {w} runs on rivne today".split(), "ner": ["O", "B-TERM", "O", "O", "B-PLACE", "O"]}
            for w in ("mouden", "forning", "stonely", "summerly", "moudening", "valdening")]
    rows += [{"words": "rivne and mouden", "ner": "B-PLACE O B-TERM"}]  # a csv-like row: space-separated
    task = load_task(write_jsonl(tmp_path / "tags.jsonl", rows), text_column="words", tags_column="ner", seed=0)
    assert task.kind == "tokens" and task.label_names == ["O", "B-PLACE", "B-TERM"]
    assert len(task.train.labels) + len(task.test.labels) == 7
    for words, tags in zip(task.train.texts + task.test.texts, task.train.labels + task.test.labels):
        assert len(words) == len(tags) and all(isinstance(w, str) for w in words)
    assert "2 entity types (PLACE, TERM)" in task.describe()


@pytest.mark.parametrize("row, fragment", [
    ({"words": ["a", "b"], "ner": ["O"]}, "2 words and 1 tags"),
    ({"words": ["a", "b"], "ner": ["O", "PER"]}, "not BIO"),
    ({"words": ["a", "b"], "ner": [0, 1]}, "not BIO"),
])
def test_bad_tags_are_refused_in_one_sentence(tmp_path, row, fragment):
    rows = [{"words": ["x", "y"], "ner": ["B-T", "O"]}] * 6 + [row]
    with pytest.raises(UsageError, match=fragment) as error:
        load_task(write_jsonl(tmp_path / "tags.jsonl", rows), text_column="words", tags_column="ner")
    assert "\n" not in str(error.value)


def test_too_few_entities_or_none_are_refused(tmp_path):
    rows = [{"words": ["x", "y"], "ner": ["B-T", "O"]}] * 6 + [{"words": ["x"], "ner": ["B-RARE"]}]
    with pytest.raises(UsageError, match="fewer than 5 entities of type 'RARE'"):
        load_task(write_jsonl(tmp_path / "tags.jsonl", rows), text_column="words", tags_column="ner")
    with pytest.raises(UsageError, match="tags no entity"):
        load_task(write_jsonl(tmp_path / "o.jsonl", [{"words": ["x"], "ner": ["O"]}] * 9), text_column="words",
                  tags_column="ner")
    with pytest.raises(UsageError, match="--task_tags_column"):
        load_task(write_jsonl(tmp_path / "t.jsonl", [{"words": ["x"], "ner": ["O"]}] * 9), text_column="words",
                  tags_column="tags")
