import json
import random

import pytest
import torch
from transformers import BertForPreTraining, DataCollatorForLanguageModeling

from benchmarks.stock_hf import main, make_pairs
from tests.conftest import make_documents

PARAGRAPHS = ["Stone one. Stone two! Stone three?", "River one.", "Tree one. Tree two."]


def test_pairs_are_each_sentence_and_the_next_of_its_paragraph():
    pairs = make_pairs(PARAGRAPHS, nsp_probability=0.0, rng=random.Random(0))
    assert pairs == {"sentence_a": ["Stone one.", "Stone two!", "Tree one."],
                     "sentence_b": ["Stone two!", "Stone three?", "Tree two."],
                     "next_sentence_label": [0, 0, 0]}


def test_random_b_comes_from_the_whole_corpus_with_label_1():
    pairs = make_pairs(PARAGRAPHS, nsp_probability=1.0, rng=random.Random(0))
    bag = {"Stone one.", "Stone two!", "Stone three?", "River one.", "Tree one.", "Tree two."}
    assert pairs["sentence_a"] == ["Stone one.", "Stone two!", "Tree one."]
    assert set(pairs["sentence_b"]) <= bag and pairs["next_sentence_label"] == [1, 1, 1]


def test_half_the_pairs_are_random_and_the_rest_consecutive():
    documents = make_documents(300, seed=1)
    pairs = make_pairs(documents, nsp_probability=0.5, rng=random.Random(0))
    labels = pairs["next_sentence_label"]
    assert abs(sum(labels) / len(labels) - 0.5) < 0.05
    text = "\n".join(documents)
    for a, b, label in zip(pairs["sentence_a"], pairs["sentence_b"], labels):
        assert label == 1 or f"{a} {b}" in text


def test_the_collator_masks_real_tokens_and_passes_the_pair_columns_through(tokenizer):
    pairs = make_pairs(make_documents(20, seed=2), nsp_probability=0.5, rng=random.Random(0))
    features = tokenizer(pairs["sentence_a"], pairs["sentence_b"], truncation=True, padding="max_length",
                         max_length=40)
    rows = [{**{k: v[i] for k, v in features.items()}, "next_sentence_label": pairs["next_sentence_label"][i]}
            for i in range(len(pairs["sentence_a"]))]
    batch = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0)(rows)
    assert batch["next_sentence_label"].tolist() == pairs["next_sentence_label"]
    assert batch["token_type_ids"].tolist() == features["token_type_ids"]
    special = torch.tensor([tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
                            for ids in features["input_ids"]], dtype=torch.bool)
    masked = batch["labels"] != -100
    assert not (masked & special).any() and masked.any()  # never [CLS], [SEP] or padding
    assert batch["input_ids"].shape == (len(rows), 40)


@pytest.mark.train
@pytest.mark.parametrize("seconds, steps", [("0", 3), ("1e-9", 1)])
def test_stock_run_saves_checkpoints_and_stops_at_its_budget(tiny_model_dir, tmp_path, capsys, seconds, steps):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_documents(40, seed=3)) + "\n")
    main(["--corpus", str(corpus), "--model", tiny_model_dir, "--output-dir", str(tmp_path / "out"),
          "--max-length", "48", "--max-steps", "3", "--save-steps", "2", "--seconds", seconds])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps"] == steps and result["precision"] == "fp32" and result["samples"] == 16 * steps
    assert 0 < result["real_tokens"] < result["samples"] * 48
    saved = [c["step"] for c in result["checkpoints"]]
    assert saved == ([2, 3] if steps == 3 else [1])  # every save_steps, and the last step
    BertForPreTraining.from_pretrained(result["checkpoints"][-1]["path"])
