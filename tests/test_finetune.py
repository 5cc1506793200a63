"""pipeline/finetune.py: two checkpoints fine-tuned the same way on a task (classification or tags); runs
reproducible by seed."""

import pytest

from pipeline.errors import UsageError
from pipeline.finetune import Budget, encode, format_task, probe_task, summarize
from pipeline.task import load_task
from tests.conftest import make_tokenizer, source_rows, tag_rows, write_jsonl


@pytest.fixture
def tag_task(tmp_path):
    return load_task(write_jsonl(tmp_path / "tags.jsonl", tag_rows(60)), text_column="tokens", tags_column="tags",
                     seed=0)


@pytest.fixture
def source_task(tmp_path):
    """Which source a text comes from: general generated prose, or the domain's (words the tiny vocabulary splits)."""
    return load_task(write_jsonl(tmp_path / "task.jsonl", source_rows(30)), seed=0)


def test_summaries_are_exact():
    assert summarize([{"accuracy": 0.5}, {"accuracy": 0.7}]) == {
        "accuracy": {"mean": 0.6, "std": pytest.approx(0.1414, abs=1e-4), "values": [0.5, 0.7]}}


def test_words_map_to_their_first_piece(tag_task):
    """Every kept word's first piece is the token whose text starts the word; words past max_seq_length have none."""
    tokenizer = make_tokenizer()
    encoded = encode(tokenizer, tag_task.train, 12, "tokens")
    for ids, words, firsts in zip(encoded["input_ids"], tag_task.train.texts, encoded["first_pieces"]):
        assert len(firsts) == len(words) and firsts[0] == 1  # after [CLS]
        positions = [p for p in firsts if p is not None]
        assert positions == sorted(set(positions)) and all(p < len(ids) - 1 for p in positions)
        for word, p in zip(words, firsts):
            if p is not None:
                assert word.startswith(tokenizer.convert_ids_to_tokens(ids[p]))
    assert any(None in firsts for firsts in encoded["first_pieces"])  # 12 tokens cut the longer sentences


def test_quick_probe_learns_the_task_and_repeats_by_seed(source_task, tiny_model_dir):
    models = {"baseline": tiny_model_dir, "adapted": tiny_model_dir}
    first = probe_task(source_task, models, Budget(seeds=2), seed=5, progress=False)
    again = probe_task(source_task, models, Budget(seeds=2), seed=5, progress=False)
    other = probe_task(source_task, models, Budget(seeds=2, epochs=3), seed=9, progress=False)
    for result in (first, again):
        for model in result["models"].values():
            model.pop("seconds")
    assert first == again and first["seeds"] == [5, 6] and first["examples"] == {"train": 48, "test": 12}
    assert first["models"]["baseline"]["accuracy"]["mean"] > 0.75  # the domain's words tell the sources apart
    assert other["seeds"] == [9, 10] and other["budget"]["epochs"] == 3
    table = format_task(other)
    assert "accuracy" in table and "macro-F1" in table and "±" in table


def test_full_fine_tuning_repeats_by_seed(source_task, tiny_model_dir):
    budget = Budget(mode="full", seeds=1, epochs=1, learning_rate=1.0e-3)
    first = probe_task(source_task, {"adapted": tiny_model_dir}, budget, progress=False)["models"]["adapted"]
    again = probe_task(source_task, {"adapted": tiny_model_dir}, budget, progress=False)["models"]["adapted"]
    assert first["accuracy"] == again["accuracy"] and first["macro_f1"] == again["macro_f1"]


def test_bad_budget_is_refused():
    with pytest.raises(UsageError, match="task_mode"):
        Budget(mode="slow")
    with pytest.raises(UsageError, match="task_seeds is 0"):
        Budget(seeds=0)


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_tags_probe_learns_entities_and_repeats_by_seed(tag_task, tiny_model_dir, mode):
    budget = Budget(mode=mode, seeds=2, epochs=None if mode == "quick" else 4,
                    learning_rate=None if mode == "quick" else 3e-3)
    first = probe_task(tag_task, {"adapted": tiny_model_dir}, budget, seed=3, progress=False)
    again = probe_task(tag_task, {"adapted": tiny_model_dir}, budget, seed=3, progress=False)
    table = format_task(first)
    assert "entity F1" in table and "word accuracy" in table and "sentences" in table
    for result in (first, again):
        result["models"]["adapted"].pop("seconds")
    assert first == again and first["kind"] == "tokens" and first["metrics"][0] == ["entity_f1", "entity F1"]
    scores = first["models"]["adapted"]
    assert set(scores) >= {"entity_f1", "entity_precision", "entity_recall", "accuracy"}
    if mode == "quick":  # the domain words are entities: their features tell them apart
        assert scores["entity_f1"]["mean"] > 0.2  # all-O scores 0; a random tiny encoder gets ~0.3


def test_full_mode_trains_enough_steps_by_default():
    assert Budget(mode="full").for_task(256).epochs == 10  # 16 steps an epoch: 160 steps
    assert Budget(mode="full").for_task(5000).epochs == 3 and Budget(mode="full").for_task(20).epochs == 20
    assert Budget(mode="full", epochs=2).for_task(256).epochs == 2 and Budget().for_task(256).epochs == 50
