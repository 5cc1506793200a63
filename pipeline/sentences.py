"""Documents -> sentences, with a rule-based segmenter.

Why not a library: NLTK's punkt and spaCy need a model download, which an offline
machine cannot do, and pysbd is slow (pure-Python rule cascades per sentence). These
rules cover what breaks `split('.')`: abbreviations (Dr., e.g.), initials and
acronyms (J. R. R., U.S.A.), decimals (3.14), dotted code (os.path.join), `?` and
`!`, closing quotes and brackets after the terminator, and ellipses.
"""

import copy
import re

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


def plain_encoder(tokenizer) -> tokenizers.Tokenizer:
    """A copy of the tokenizer's Rust backend with padding and truncation off.

    Checkpoints often ship a tokenizer.json that pads or truncates (all-MiniLM-L6-v2 pads every
    batch to its longest item); sentences must come out as their own tokens and nothing else.
    """
    encoder = copy.deepcopy(tokenizer.backend_tokenizer)
    encoder.no_padding()
    encoder.no_truncation()
    return encoder


def encode_documents(texts: list[str], encoder: tokenizers.Tokenizer, max_num_tokens: int) -> dict[str, list]:
    """A batch of documents -> per document, its sentences as token ids (no special tokens).

    `encoder` comes from `plain_encoder`. A "sentence" longer than max_num_tokens (a table,
    code, a list with no full stops) is cut into max_num_tokens pieces so no segment overflows.
    """
    split = [split_sentences(text) for text in texts]
    flat = [sentence for sentences in split for sentence in sentences]
    # One call per batch straight to the Rust tokenizer: it parallelises across the batch, and skipping
    # transformers' BatchEncoding wrapper and offsets makes this step about twice as fast.
    ids = [e.ids for e in encoder.encode_batch_fast(flat, add_special_tokens=False)] if flat else []
    documents, k = [], 0
    for sentences in split:
        document = []
        for sentence_ids in ids[k:k + len(sentences)]:
            document += [sentence_ids[j:j + max_num_tokens] for j in range(0, len(sentence_ids), max_num_tokens)]
        k += len(sentences)
        documents.append(document)
    return {
        "sentences": documents,
        "num_sentences": [len(d) for d in documents],
        "num_tokens": [sum(map(len, d)) for d in documents],
    }
