"""Hermetic fixtures and helpers shared by the tests: a tiny BERT and tokenizer built in-process, generated corpora,
a `datasets` cache of each test's own, the repository's paths, no network. Test modules share through this file
only, never by importing one another.

Tiers: `pytest -m "not slow"` (`make test-fast`) is the inner loop; `slow` marks tests that start processes
(torchrun, the CLI as a user runs it, kill -9, pip) or train for more than a few seconds; `gpu` those that need
a CUDA GPU. `make test` runs everything.
"""

import json
import os
import random
import socket
import subprocess
import sys

import datasets
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEDITATIONS = os.path.join(ROOT, "..", "shared", "data", "meditations.txt")
WORDS = ("river stone light water tree cloud wind fire earth road house field bird song night morning "
         "city garden letter window market bridge summer winter valley mountain forest ocean island").split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Words the tiny vocabulary splits: 3 pieces (mou ##den ##ing) or 2 (mou ##den).
DOMAIN = ["moudening", "valdening", "cloudering", "mouden", "rivne", "forning", "stonely", "summerly"]
# Flags that keep an in-process `train` small and quiet.
FAST_TRAIN = ["--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--logging_steps", "1",
              "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true"]


def _use_datasets_cache(path, setenv, setattr_) -> None:
    """Points `datasets` (and so this tool's cache, pipeline/cache.py) at path, in this process and its children."""
    setenv("HF_DATASETS_CACHE", str(path))
    setattr_(datasets.config, "HF_DATASETS_CACHE", str(path))


@pytest.fixture(scope="session", autouse=True)
def _isolated_hf_home(tmp_path_factory):
    """A Hugging Face home of the session's own, also for session- and module-scoped fixtures."""
    home = tmp_path_factory.getbasetemp() / "hf_home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(home))
        _use_datasets_cache(home / "datasets", patch.setenv, patch.setattr)
        yield


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path_factory, monkeypatch):
    """A `datasets` cache of the test's own (outside tmp_path), so what a test prepares is its own."""
    path = tmp_path_factory.mktemp("datasets-cache")
    _use_datasets_cache(path, monkeypatch.setenv, monkeypatch.setattr)
    return path


@pytest.fixture(scope="session")
def root() -> str:
    """The repository's root."""
    return ROOT


@pytest.fixture
def subprocess_env() -> dict:
    """The environment for running this checkout's `python -m pipeline` in a child process."""
    return {**os.environ, "PYTHONPATH": ROOT}


@pytest.fixture(scope="session")
def meditations() -> str:
    """The seed tutorial's corpus, beside this checkout; the test is skipped without it."""
    if not os.path.isfile(MEDITATIONS):
        pytest.skip("the seed's corpus is not beside this checkout")
    return MEDITATIONS


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


def domain_documents(n_docs: int, seed: int = 0) -> list[str]:
    """Generated documents where domain words are frequent, the first of DOMAIN most often."""
    rng = random.Random(seed)
    weights = [len(DOMAIN) - i for i in range(len(DOMAIN))]
    documents = []
    for _ in range(n_docs):
        sentences = []
        for _ in range(rng.randint(2, 8)):
            words = make_sentence(rng).rstrip(".?!").split()
            words.insert(rng.randrange(len(words)), rng.choices(DOMAIN, weights)[0])
            sentences.append(" ".join(words) + ".")
        documents.append(" ".join(sentences))
    return documents


def make_examples(tokenizer, n=400, seed=0) -> list[dict]:
    """Random sentence pairs as the prepared dataset holds them (input_ids, token_type_ids, label, length)."""
    rng = random.Random(seed)
    words = [t for t in tokenizer.get_vocab() if t.isalpha() and len(t) > 3]
    out = []
    for _ in range(n):
        a = " ".join(rng.choice(words) for _ in range(rng.randint(3, 20)))
        b = " ".join(rng.choice(words) for _ in range(rng.randint(3, 20)))
        enc = tokenizer(a, b)
        out.append({"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
                    "next_sentence_label": rng.randint(0, 1), "length": len(enc["input_ids"])})
    return out


@pytest.fixture
def corpus_file(tmp_path):
    """A paragraph-per-line corpus of 60 generated documents."""
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(make_documents(60)) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def domain_corpus(tmp_path):
    """60 generated documents full of the DOMAIN words, one per line."""
    path = tmp_path / "domain.txt"
    path.write_text("\n".join(domain_documents(60)) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def config_dir(tmp_path):
    """A folder with a tiny BERT config.json, for --config_name."""
    from transformers import BertConfig

    path = tmp_path / "config"
    BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=64).save_pretrained(path)
    return path


@pytest.fixture
def torchrun(subprocess_env):
    """Runs the real `train` in two processes on CPU (gloo) through torchrun (tests/ddp_worker.py) and returns what
    each rank recorded in <output_dir>/rank<N>.json."""

    def run(*args: str) -> list[dict]:
        output_dir = args[args.index("--output_dir") + 1]
        with socket.socket() as probe:  # a free port, so parallel or leftover runs cannot collide
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               os.path.join(ROOT, "tests", "ddp_worker.py"), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, env={**subprocess_env, "OMP_NUM_THREADS": "1"},
                                cwd=ROOT, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return [json.load(open(os.path.join(output_dir, f"rank{r}.json"))) for r in (0, 1)]

    return run
