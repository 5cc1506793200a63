"""Sentences -> token ids, through a cache of whole words: a batch of documents -> their sentences as ids."""

import copy
import json
import re
from itertools import chain

import tokenizers

from pipeline.sentences import split_sentences

# Python's str.split() also splits on these; BERT deletes them as control characters, joining the words around them.
_PYTHON_ONLY_SPACE = re.compile("[\x0b\x0c\x1c-\x1f\x85]")
# Text that is not words separated by single spaces: any other whitespace, a run of spaces, a space at either end.
_NOT_SINGLE_SPACED = re.compile(r"[^\S ]|  |^ | $")
# Normalizers that change each character on its own, never looking across a space.
_CHARACTER_NORMALIZERS = {"Lowercase", "NFC", "NFD", "NFKC", "NFKD", "StripAccents", "BertNormalizer"}
MAX_CACHED_WORDS = 200_000  # about 40 MB; cleared when full, which Zipf's law makes rare


def pipeline_steps(component: dict | None) -> list[dict]:
    """The steps of a tokenizer's normalizer or pre-tokenizer (as in its tokenizer.json), a Sequence's flattened."""
    if not component:
        return []
    inner = component.get("pretokenizers") or component.get("normalizers")
    return [step for part in inner for step in pipeline_steps(part)] if inner else [component]


def _local_normalizer(step: dict) -> bool:
    if step["type"] == "Replace":  # ``  -> " (ALBERT's): local as long as no space is replaced or put in
        pattern = step["pattern"].get("String")
        return pattern is not None and not re.search(r"\s", pattern + step["content"])
    return step["type"] in _CHARACTER_NORMALIZERS


def _word_split(backend: tokenizers.Tokenizer) -> str | None:
    """How a text may be cut into chunks that the tokenizer encodes independently of each other, or None.

    "whitespace" (BERT's tokenizers): the normalizer works character by character, the pre-tokenizer first
    splits on whitespace and WordPiece sees one word at a time, so the ids of a text are the ids of its
    whitespace-separated chunks, concatenated. "space" (byte-level BPE, SentencePiece's Metaspace, after a
    character-wise normalizer): a word's first piece carries the space before it (`Ġriver`, `▁river`), so each
    chunk after the first is encoded with its one space in front; a text with any other whitespace is not cut.
    An added token with a space in it, or any other pipeline, is not assumed to be separable.
    """
    state = json.loads(backend.to_str())
    if any(re.search(r"\s", t["content"]) for t in state.get("added_tokens", [])):
        return None
    normalizers, pre_tokenizers = pipeline_steps(state.get("normalizer")), pipeline_steps(state.get("pre_tokenizer"))
    model = state["model"]["type"]
    if all(n["type"] == "BertNormalizer" for n in normalizers) and [p["type"] for p in pre_tokenizers] == \
            ["BertPreTokenizer"] and model == "WordPiece":
        return "whitespace"
    spaced = len(pre_tokenizers) == 1 and (
        (pre_tokenizers[0]["type"] == "ByteLevel" and pre_tokenizers[0].get("use_regex", True))
        or (pre_tokenizers[0]["type"] == "Metaspace" and pre_tokenizers[0].get("split", True)))
    if spaced and all(map(_local_normalizer, normalizers)) and model in ("BPE", "Unigram", "WordPiece"):
        return "space"
    return None


class SentenceEncoder:
    """Text -> token ids without special tokens, through a cache of whole words.

    The Rust tokenizer spends its time normalizing and splitting every character of every
    word, and reaches about 1.5 MB/s a core here; most words of a corpus are repeats. For
    word-separable tokenizers (BERT's, byte-level BPE and SentencePiece ones: `_word_split`),
    each distinct chunk goes through the Rust tokenizer once and its ids are reused: the same
    ids, about 3x faster. Anything else goes straight to the Rust tokenizer.
    """

    def __init__(self, tokenizer):
        # A copy of the backend with padding and truncation off: checkpoints often ship a tokenizer.json that
        # pads or truncates (all-MiniLM-L6-v2 pads every batch to its longest item).
        self.backend = copy.deepcopy(tokenizer.backend_tokenizer)
        self.backend.no_padding()
        self.backend.no_truncation()
        self.word_separable = _word_split(self.backend)
        # In "space" mode an added token's lstrip/rstrip can take a space from the text around it: such texts go whole.
        added = [t.content for t in self.backend.get_added_tokens_decoder().values()]
        self.added = re.compile("|".join(map(re.escape, added))) if added else None
        self.cache: dict[str, list[int]] = {}

    def __getstate__(self):  # the cache is a per-process speed-up, not state (and would change datasets' hash)
        return {"backend": self.backend, "word_separable": self.word_separable, "added": self.added}

    def __setstate__(self, state):
        self.__dict__.update(state, cache={})

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)] if texts else []

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """The ids of each text, exactly as the backend tokenizer gives them."""
        if not self.word_separable:
            return self._encode(texts)
        if len(self.cache) > MAX_CACHED_WORDS:
            self.cache.clear()
        cache = self.cache
        if self.word_separable == "whitespace":
            words = [None if _PYTHON_ONLY_SPACE.search(text) else text.split() for text in texts]
        else:
            words = [None if _NOT_SINGLE_SPACED.search(text) or (self.added and self.added.search(text)) else
                     [chunk if i == 0 else " " + chunk for i, chunk in enumerate(text.split(" "))] for text in texts]
        missing = list({w for chunk in words if chunk is not None for w in chunk if w not in cache})
        cache.update(zip(missing, self._encode(missing)))
        odd = [i for i, chunk in enumerate(words) if chunk is None]
        out = [list(chain.from_iterable(map(cache.__getitem__, chunk))) if chunk is not None else None
               for chunk in words]
        for i, ids in zip(odd, self._encode([texts[i] for i in odd])):
            out[i] = ids
        return out


def encode_documents(texts: list[str], encoder: SentenceEncoder, max_num_tokens: int,
                     language: str = "en") -> dict[str, list]:
    """A batch of documents -> per document, its sentences as token ids (no special tokens).

    A "sentence" longer than max_num_tokens (a table, code, a list with no full stops) is cut into
    max_num_tokens pieces so no segment overflows; `overlong_tokens` counts, per document, the
    tokens of such sentences.
    """
    split = [split_sentences(text, language) for text in texts]
    flat = [sentence for sentences in split for sentence in sentences]
    ids = encoder.encode_batch(flat)
    documents, overlong, k = [], [], 0
    for sentences in split:
        document, cut = [], 0
        for sentence_ids in ids[k:k + len(sentences)]:
            if len(sentence_ids) > max_num_tokens:
                cut += len(sentence_ids)
            document += [sentence_ids[j:j + max_num_tokens] for j in range(0, len(sentence_ids), max_num_tokens)]
        k += len(sentences)
        documents.append(document)
        overlong.append(cut)
    return {
        "sentences": documents,
        "num_sentences": [len(d) for d in documents],
        "num_tokens": [sum(map(len, d)) for d in documents],
        "overlong_tokens": overlong,
    }
