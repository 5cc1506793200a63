"""Hermetic fixtures: a tiny BERT and tokenizer built in-process, generated corpora, no network."""

import os
import random

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ("river stone light water tree cloud wind fire earth road house field bird song night morning "
         "city garden letter window market bridge summer winter valley mountain forest ocean island").split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))


def make_vocab(specials=SPECIALS, unused: int = 5) -> dict[str, int]:
    tokens = list(specials) + [f"[unused{i}]" for i in range(unused)] + [".", ",", "?", "!"]
    tokens += WORDS + [f"##{suffix}" for suffix in ("s", "ed", "ing", "er", "ly")]
    tokens += [w[:3] for w in WORDS if w[:3] not in WORDS] + [f"##{w[3:]}" for w in WORDS]
    tokens += [str(d) for d in range(10)]
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}


def make_tokenizer(vocab=None):
    from transformers import BertTokenizer

    return BertTokenizer(vocab=vocab or make_vocab())


def make_model(vocab_size: int, max_position_embeddings: int = 128):
    from transformers import BertConfig

    from pipeline.model import BertForPreTrainingSparse

    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_position_embeddings)
    return BertForPreTrainingSparse(config)


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny BERT (random weights) with its tokenizer: a stand-in for a real checkpoint."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert")
    tok = make_tokenizer()
    make_model(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def make_sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
    return " ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"])


def make_documents(n_docs: int, seed: int = 0, min_sentences: int = 2, max_sentences: int = 12) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(make_sentence(rng) for _ in range(rng.randint(min_sentences, max_sentences)))
            for _ in range(n_docs)]


@pytest.fixture
def corpus_file(tmp_path):
    """A paragraph-per-line corpus of 60 generated documents."""
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(make_documents(60)) + "\n", encoding="utf-8")
    return str(path)
