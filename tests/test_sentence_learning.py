"""The trainer and pipeline/optimizer.py together: a new sentence head learns beside MLM as fast as alone.

Summed plainly, MLM's gradient drowns a new NSP/SOP head's and it stays at the majority class. These train a
tiny BERT saved without heads (its MLM transform and sentence head start untrained), or one built from scratch,
on documents where the sentence signal is learnable in a few hundred steps (SOP alone: 96% by step 200), and
check the head learns jointly with MLM.
"""

import random

import pytest
import torch

from tests.conftest import WORDS, make_tokenizer

pytestmark = pytest.mark.slow  # a few hundred steps each

TOPICS = [WORDS[i::4] for i in range(4)]


def ordered_documents(n_docs: int, seed: int = 0) -> list[str]:
    """Sentences that count up (`3 river stone. 4 bird ...`): their order is learnable, their topic is not."""
    rng = random.Random(seed)
    return [" ".join(f"{start + i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) + "."
                     for i in range(rng.randint(3, 5)))
            for start in (rng.randint(0, 4) for _ in range(n_docs))]


@pytest.fixture
def headless_bert(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = make_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64)
    BertModel(config).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def train(tmp_path, model_dir, objective: str, steps: int, *flags: str) -> tuple[list[float], float]:
    """Held-out sentence accuracy at each quarter of the run, and MLM accuracy at the end."""
    from pipeline.train import main

    corpus = tmp_path / "ordered.txt"
    corpus.write_text("\n".join(ordered_documents(400)) + "\n")
    trainer = main(["--model_name_or_path", str(model_dir), "--train_file", str(corpus), "--objective", objective,
                    "--output_dir", str(tmp_path / "run"), "--max_seq_length", "48", "--max_steps", str(steps),
                    "--num_train_epochs", "50", "--learning_rate", "1e-3", "--warmup_steps", "0.1",
                    "--per_device_train_batch_size", "16", "--validation_split_percentage", "20",
                    "--eval_strategy", "steps", "--eval_steps", str(steps // 4), "--logging_steps", str(steps // 4),
                    "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
                    *flags], return_trainer=True)
    evaluations = [h for h in trainer.state.log_history if f"eval_{objective}_accuracy" in h]
    return [h[f"eval_{objective}_accuracy"] for h in evaluations], evaluations[-1]["eval_mlm_accuracy"]


def test_a_new_sop_head_learns_beside_mlm(headless_bert, tmp_path):
    accuracy, mlm = train(tmp_path, headless_bert, "sop", 240)  # head_moments separate, the default
    assert accuracy[0] < 0.6 and accuracy[-1] >= 0.85, accuracy  # from chance to order
    assert mlm >= 0.15, mlm  # and MLM learns too: chance over 107 pieces is under 1%


def test_a_model_from_scratch_learns_order_beside_mlm(headless_bert, tmp_path):
    # 320 steps: the scratch tokenizer's ties fall differently from run to run (pipeline/wordpiece.py), and with
    # some of them order is learnt only after step 240 (2 of 9 runs in length-grouped batches; 8 of 8 by step 320)
    accuracy, mlm = train(tmp_path, headless_bert, "sop", 320, "--tokenizer_from_scratch", "200",
                          "--config_name", str(headless_bert))
    assert accuracy[0] < 0.6 and accuracy[-1] >= 0.85, accuracy
    assert mlm >= 0.1, mlm


def test_shared_moments_leave_the_sop_head_at_chance(headless_bert, tmp_path):
    """The failure separate moments exist for, on the same data: BERT's plain sum learns no order in these steps."""
    accuracy, _ = train(tmp_path, headless_bert, "sop", 240, "--head_moments", "shared",
                        "--sentence_gradient_share", "0")
    assert max(accuracy) < 0.6, accuracy
