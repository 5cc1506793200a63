"""Documents -> sentences, with a rule-based segmenter.

Why not a library: NLTK's punkt and spaCy need a model download, which an offline
machine cannot do, and pysbd is slow (pure-Python rule cascades per sentence). These
rules cover what breaks `split('.')`: abbreviations (Dr., e.g.), initials and
acronyms (J. R. R., U.S.A.), decimals (3.14), dotted code (os.path.join), `?` and
`!`, closing quotes and brackets after the terminator, and ellipses.
"""

import copy
import json
import re
from itertools import chain

import tokenizers

# Abbreviations after which a period does not end a sentence (lower case, no final dot).
ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st mt rev gen col lt sgt capt cmdr gov sen rep hon messrs mme mlle
e.g i.e cf vs viz al approx ca nos vol vols fig figs eq eqs pp eds ref
inc ltd co corp bros dept univ assn jan feb mar apr jun jul aug sept oct nov dec
""".split())

# A terminator run, then closing quotes/brackets, then whitespace: a candidate boundary.
_CANDIDATE = re.compile(r"""([.!?]+)(['"’”)\]]*)(\s+)""")
# What may start a sentence: upper-case letter, digit, or an opening quote/bracket.
_STARTER = re.compile(r"""['"‘“(\[]*[A-Z0-9À-ÖØ-Þ]""")
_WORD_BEFORE = re.compile(r"(\S+)$")
_ACRONYM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")


def _is_abbreviation(text: str, end: int) -> bool:
    """True if the period at text[end] closes an abbreviation, an initial or an acronym."""
    match = _WORD_BEFORE.search(text, max(0, end - 40), end)  # a bounded look back keeps this linear
    if not match:
        return False
    word = match.group(1).lstrip("(['\"‘“")
    if len(word) == 1 and word.isupper():  # an initial: "J. Smith" (but "returns x. If" ends a sentence)
        return True
    if _ACRONYM.fullmatch(word):  # "U.S.A", "e.g"
        return True
    return word.lower() in ABBREVIATIONS


def split_sentences(text: str) -> list[str]:
    """Splits one document's text into sentences; whitespace inside a sentence is kept as is.

    Args:
        text: A paragraph or document; line breaks count as spaces.

    Returns:
        The sentences, stripped, none empty.
    """
    sentences, start = [], 0
    for match in _CANDIDATE.finditer(text):
        terminator, cut = match.group(1), match.end(2)
        if not _STARTER.match(text, match.end()):
            continue
        if terminator == "." and _is_abbreviation(text, match.start(1)):
            continue
        sentence = text[start:cut].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


# Python's str.split() also splits on these; BERT deletes them as control characters, joining the words around them.
_PYTHON_ONLY_SPACE = re.compile("[\x0b\x0c\x1c-\x1f\x85]")
MAX_CACHED_WORDS = 200_000  # about 40 MB; cleared when full, which Zipf's law makes rare


def _word_separable(backend: tokenizers.Tokenizer) -> bool:
    """True if the tokenizer encodes each whitespace-separated chunk of text independently of the others.

    BERT's normalizer works character by character, its pre-tokenizer first splits on whitespace and
    WordPiece sees one word at a time, so the ids of a text are the ids of its chunks, concatenated.
    An added token with a space in it, or any other pipeline, is not assumed to be so.
    """
    state = json.loads(backend.to_str())
    normalizer, pre_tokenizer = state.get("normalizer") or {}, state.get("pre_tokenizer") or {}
    return (normalizer.get("type") in (None, "BertNormalizer") and pre_tokenizer.get("type") == "BertPreTokenizer"
            and state["model"]["type"] == "WordPiece"
            and not any(re.search(r"\s", t["content"]) for t in state.get("added_tokens", [])))


class SentenceEncoder:
    """Text -> token ids without special tokens, through a cache of whole words.

    The Rust tokenizer spends its time normalizing and splitting every character of every
    word, and reaches about 1.5 MB/s a core here; most words of a corpus are repeats. For
    word-separable tokenizers (BERT's), each distinct whitespace-separated chunk goes through
    the Rust tokenizer once and its ids are reused: the same ids, about 3x faster. Anything
    else goes straight to the Rust tokenizer.
    """

    def __init__(self, tokenizer):
        # A copy of the backend with padding and truncation off: checkpoints often ship a tokenizer.json that
        # pads or truncates (all-MiniLM-L6-v2 pads every batch to its longest item).
        self.backend = copy.deepcopy(tokenizer.backend_tokenizer)
        self.backend.no_padding()
        self.backend.no_truncation()
        self.word_separable = _word_separable(self.backend)
        self.cache: dict[str, list[int]] = {}

    def __getstate__(self):  # the cache is a per-process speed-up, not state (and would change datasets' hash)
        return {"backend": self.backend, "word_separable": self.word_separable}

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
        words = [None if _PYTHON_ONLY_SPACE.search(text) else text.split() for text in texts]
        missing = list({w for chunk in words if chunk is not None for w in chunk if w not in cache})
        cache.update(zip(missing, self._encode(missing)))
        odd = [i for i, chunk in enumerate(words) if chunk is None]
        out = [list(chain.from_iterable(map(cache.__getitem__, chunk))) if chunk is not None else None
               for chunk in words]
        for i, ids in zip(odd, self._encode([texts[i] for i in odd])):
            out[i] = ids
        return out


def encode_documents(texts: list[str], encoder: SentenceEncoder, max_num_tokens: int) -> dict[str, list]:
    """A batch of documents -> per document, its sentences as token ids (no special tokens).

    A "sentence" longer than max_num_tokens (a table, code, a list with no full stops) is cut into
    max_num_tokens pieces so no segment overflows; `overlong_tokens` counts, per document, the
    tokens of such sentences.
    """
    split = [split_sentences(text) for text in texts]
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
