"""Two processes on CPU (gloo) through torchrun: the real multi-process path users take on GPUs."""

import json
import os

import pytest
from transformers import AutoTokenizer

from pipeline.cache import cache_root
from pipeline.heads import HeadSums
from tests.conftest import FAST_TRAIN, make_documents


@pytest.mark.slow
def test_two_processes_share_pairs_split_batches_and_save_once(tiny_model_dir, tmp_path, torchrun):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_documents(80, seed=3)) + "\n")
    out = tmp_path / "run"
    task = tmp_path / "task.jsonl"  # the task probe runs on rank 0 alone, after the other rank is done
    task.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n"
                            for i, t in enumerate(make_documents(20, seed=5, max_sentences=2))))
    ranks = torchrun("--model_name_or_path", tiny_model_dir, "--train_file", str(corpus), "--output_dir", str(out),
                     "--max_seq_length", "48", "--per_device_train_batch_size", "4", "--max_steps", "6",
                     "--logging_steps", "2", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
                     "--learning_rate", "1.0e-3", "--task_file", str(task), "--task_seeds", "1")
    assert [r["world_size"] for r in ranks] == [2, 2]
    probed = json.load(open(out / "report.json"))["task"]
    assert probed["models"]["adapted"]["model"] == str(out) and probed["examples"] == {"train": 16, "test": 4}

    # Both ranks built (rank 0) or loaded (rank 1) the identical prepared dataset.
    assert ranks[0]["train_hash"] == ranks[1]["train_hash"]
    # and end with the same weights: both heads' gradients (the NSP head's has moments of its own) were averaged.
    assert ranks[0]["weights_hash"] == ranks[1]["weights_hash"]
    # Each rank trained on its own shard: 6 steps x 4 examples each (plus the one batch accelerate's
    # dataloader fetches ahead), no example on both.
    seen0, seen1 = ranks[0]["seen"], ranks[1]["seen"]
    assert 24 <= len(seen0) <= 28 and 24 <= len(seen1) <= 28
    assert not set(seen0) & set(seen1) and set(seen0 + seen1) <= set(ranks[0]["all_train"])
    # Exactly one final model, written once.
    weights = [f for f in os.listdir(out) if f.endswith(".safetensors")]
    assert weights == ["model.safetensors"] and (out / "config.json").is_file() and (out / "report.json").is_file()
    # Logged per-head metrics are the means over both ranks, not rank 0's own.
    logged = [h for h in ranks[0]["log_history"] if "mlm_loss" in h]
    assert [h["step"] for h in logged] == [2, 4, 6]
    for entry, s0, s1 in zip(logged, ranks[0]["local_sums"], ranks[1]["local_sums"]):
        own = HeadSums(*s0["sums"])
        total = HeadSums(*(a + b for a, b in zip(s0["sums"], s1["sums"])))
        assert entry["mlm_loss"] == pytest.approx(total.mlm_loss_sum / total.mlm_count, abs=1e-4)
        assert entry["nsp_accuracy"] == pytest.approx(total.sentence_correct / total.sentence_count, abs=1e-4)
        assert own.mlm_count != total.mlm_count  # rank 0 alone counted fewer masked tokens


@pytest.mark.slow
def test_two_processes_train_one_scratch_tokenizer(tiny_model_dir, domain_corpus, config_dir, tmp_path, torchrun):
    """Rank 0 trains and saves the tokenizer; rank 1 waits and loads it, so both tokenize alike."""
    out = tmp_path / "run"
    ranks = torchrun("--model_name_or_path", tiny_model_dir, "--train_file", domain_corpus, "--output_dir", str(out),
                     "--max_seq_length", "48", "--tokenizer_from_scratch", "150", "--config_name", str(config_dir),
                     "--max_steps", "2", *FAST_TRAIN)
    assert ranks[0]["train_hash"] == ranks[1]["train_hash"]
    scratch = [p for p in cache_root().iterdir() if p.name.startswith("tokenizer-")]
    assert len(scratch) == 1  # one tokenizer, in the cache, whichever rank got there
    assert AutoTokenizer.from_pretrained(out).get_vocab() == AutoTokenizer.from_pretrained(scratch[0]).get_vocab()
