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


# Special tokens of each style: (cls, sep, pad, unk, mask), in the order the trained vocabulary gets them.
BERT_STYLE = ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")
ROBERTA_STYLE = ("<s>", "</s>", "<pad>", "<unk>", "<mask>")
ALBERT_STYLE = ("[CLS]", "[SEP]", "<pad>", "<unk>", "[MASK]")
# Each family as its checkpoints ship: tokenizer kind, special tokens, whether pairs get token types 0/1.
FAMILY_TOKENIZERS = {
    "bert": ("wordpiece", BERT_STYLE, True), "megatron-bert": ("wordpiece", BERT_STYLE, True),
    "ernie": ("wordpiece", BERT_STYLE, True), "distilbert": ("wordpiece", BERT_STYLE, False),
    "electra": ("wordpiece", BERT_STYLE, True), "roberta": ("bpe", ROBERTA_STYLE, False),
    "modernbert": ("bpe", BERT_STYLE, False), "albert": ("unigram", ALBERT_STYLE, True),
    "xlm-roberta": ("unigram", ROBERTA_STYLE, False), "camembert": ("unigram", ROBERTA_STYLE, False),
    "deberta-v2": ("unigram", BERT_STYLE, True),
}
TOKENIZER_VOCAB_SIZES = {"wordpiece": 150, "bpe": 330, "unigram": 90}  # small: most words split into pieces


def train_tokenizer(kind: str, style=BERT_STYLE, token_types: bool = True, texts=None):
    """A WordPiece, byte-level BPE or Unigram (SentencePiece) tokenizer trained with `tokenizers` on generated text,
    wrapped as a fast tokenizer with the style's special tokens and the post-processor of its family."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    cls, sep, pad, unk, mask = style
    vocab_size = TOKENIZER_VOCAB_SIZES[kind]
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=unk))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(style))
    elif kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(style),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(style), unk_token=unk)
    tok.train_from_iterator(texts or make_documents(200, seed=11), trainer)
    ids = {token: tok.token_to_id(token) for token in (cls, sep)}
    if style == ROBERTA_STYLE:  # <s> A </s> </s> B </s>, one token type
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} {sep} $B {sep}", special_tokens=list(ids.items()))
    else:
        second = 1 if token_types else 0
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:{second} {sep}:{second}",
            special_tokens=list(ids.items()))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, cls_token=cls, sep_token=sep, pad_token=pad, unk_token=unk,
        mask_token=AddedToken(mask, lstrip=style == ROBERTA_STYLE, normalized=False), bos_token=cls, eos_token=sep,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"] if token_types else
        ["input_ids", "attention_mask"])


def make_family_model(model_type: str, tokenizer, *, max_positions: int = 128):
    """A tiny model of the family (hidden 32, 2 layers, random weights) of its stock pre-training class, or of its
    masked-LM class where it has no sentence head."""
    import transformers

    from pipeline.families import FAMILIES

    family = FAMILIES[model_type]
    shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    special = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                   eos_token_id=tokenizer.sep_token_id)
    config = {
        "albert": lambda: transformers.AlbertConfig(embedding_size=16, **shape, **special,
                                                    max_position_embeddings=max_positions),
        "roberta": lambda: transformers.RobertaConfig(**shape, **special, max_position_embeddings=max_positions + 2,
                                                      type_vocab_size=1),
        "xlm-roberta": lambda: transformers.XLMRobertaConfig(**shape, **special, type_vocab_size=1,
                                                             max_position_embeddings=max_positions + 2),
        "camembert": lambda: transformers.CamembertConfig(**shape, **special, type_vocab_size=1,
                                                          max_position_embeddings=max_positions + 2),
        "modernbert": lambda: transformers.ModernBertConfig(
            **shape, **special, max_position_embeddings=max_positions, local_attention=16,
            cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id),
        "deberta-v2": lambda: transformers.DebertaV2Config(
            **shape, **special, max_position_embeddings=max_positions, relative_attention=True,
            pos_att_type=["p2c", "c2p"], position_biased_input=False, position_buckets=16, type_vocab_size=2),
        "distilbert": lambda: transformers.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, **special,
                                                            max_position_embeddings=max_positions),
        "electra": lambda: transformers.ElectraConfig(embedding_size=16, **shape, **special,
                                                      max_position_embeddings=max_positions),
    }.get(model_type, lambda: transformers.AutoConfig.for_model(model_type, **shape, **special,
                                                                max_position_embeddings=max_positions))()
    return getattr(transformers, family.pretraining or family.masked_lm)(config)


@pytest.fixture(scope="session")
def family_model_dir(tmp_path_factory):
    """model_type -> a saved tiny model of that family with a tokenizer trained for it (built once a session)."""
    import torch

    built = {}

    def build(model_type: str) -> str:
        if model_type not in built:
            torch.manual_seed(0)
            kind, style, token_types = FAMILY_TOKENIZERS[model_type]
            path = tmp_path_factory.mktemp(f"tiny-{model_type}")
            tokenizer = train_tokenizer(kind, style, token_types)
            make_family_model(model_type, tokenizer).save_pretrained(path)
            tokenizer.save_pretrained(path)
            built[model_type] = str(path)
        return built[model_type]

    return build


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
    words = sorted(t for t in tokenizer.get_vocab() if t.isalpha() and len(t) > 3)  # get_vocab's order varies
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


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def source_rows(n_per_class: int = 20) -> list[dict]:
    """A task where the adapted domain matters: which source a text comes from, general generated prose or the
    domain's (words the tiny vocabulary splits)."""
    general = [{"text": t, "label": "general"} for t in make_documents(n_per_class, seed=3, max_sentences=2)]
    return general + [{"text": t, "label": "domain"} for t in domain_documents(n_per_class, seed=4)]


def tag_rows(n: int, seed: int = 0) -> list[dict]:
    """Sentences of general words with domain words in them, tagged: a one-word TERM (the first half of DOMAIN) or
    a two-word PLACE (a second-half domain word and the general word after it)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 10))]
        tags = ["O"] * len(words)
        for _ in range(rng.randint(1, 2)):
            at = rng.randrange(len(words))
            if rng.random() < 0.5:
                words.insert(at, rng.choice(DOMAIN[:4]))
                tags.insert(at, "B-TERM")
            else:
                words[at:at] = [rng.choice(DOMAIN[4:]), rng.choice(WORDS)]
                tags[at:at] = ["B-PLACE", "I-PLACE"]
        rows.append({"tokens": words, "tags": tags})
    return rows
