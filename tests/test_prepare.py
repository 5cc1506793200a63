import json
import os

import pytest

from pipeline.errors import UsageError
from pipeline.prepare import prepare_dataset


def test_prepare_builds_splits_and_reuses_cache(tokenizer, corpus_file, tmp_path):
    dataset_dir = str(tmp_path / "dataset")
    dataset, stats = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=dataset_dir,
                                     max_seq_length=32, validation_split_percentage=10, seed=1)
    assert set(dataset) == {"train", "validation"}
    assert {"input_ids", "token_type_ids", "next_sentence_label"} <= set(dataset["train"].column_names)
    assert stats["train"]["documents"] == 54 and stats["validation"]["documents"] == 6
    assert all(len(ids) <= 32 for ids in dataset["train"]["input_ids"])
    saved = json.loads((tmp_path / "dataset" / "prepare.json").read_text())
    assert saved["stats"] == stats

    stamp = os.path.getmtime(os.path.join(dataset_dir, "prepare.json"))
    again, stats_again = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=dataset_dir,
                                         max_seq_length=32, validation_split_percentage=10, seed=1)
    assert stats_again == stats and os.path.getmtime(os.path.join(dataset_dir, "prepare.json")) == stamp
    assert again["train"]["input_ids"][:] == dataset["train"]["input_ids"][:]

    # A changed setting rebuilds; nothing temporary is left beside the dataset.
    _, other = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=dataset_dir,
                               max_seq_length=24, validation_split_percentage=10, seed=1)
    assert other != stats and sorted(os.listdir(tmp_path)) == ["corpus.txt", "dataset"]


def test_validation_documents_never_reach_training(tokenizer, corpus_file, tmp_path):
    dataset, _ = prepare_dataset(tokenizer, train_files=[corpus_file], dataset_dir=str(tmp_path / "d"),
                                 max_seq_length=64, validation_split_percentage=20, seed=3, nsp_probability=0.0)

    def sentence_set(split):
        return {tuple(ids) for ids in dataset[split]["input_ids"][:]}

    val_tokens = {tuple(ids[1:ids.index(tokenizer.sep_token_id)]) for ids in dataset["validation"]["input_ids"][:]}
    train_text = [ids for ids in dataset["train"]["input_ids"][:]]
    for a in val_tokens:
        assert not any(_contains(ids, list(a)) for ids in train_text)
    assert sentence_set("train").isdisjoint(sentence_set("validation"))


def _contains(haystack, needle):
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def test_corpus_without_two_sentence_documents_is_refused(tokenizer, tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("\n".join(f"Only one sentence number {i}" for i in range(20)))
    with pytest.raises(UsageError, match="no document has two sentences.*--objective mlm"):
        prepare_dataset(tokenizer, train_files=[str(path)], dataset_dir=str(tmp_path / "d"),
                        validation_split_percentage=0)
    assert not (tmp_path / "d").exists()
