"""Tokenized documents -> sentence pairs (A, B, label), after google-research/bert.

A document is a list of sentences, each a list of token ids. The segment
algorithm is `create_instances_from_document` of google-research/bert's
create_pretraining_data.py, with one change: the label is drawn *before* the
chunk is split, and a chunk that cannot have a true continuation (a single
last sentence) is never used as A whatever its label, so the share of
negatives equals `nsp_probability` instead of drifting above it.
"""

import random
from itertools import chain


def kept_lengths(length_a: int, length_b: int, max_num_tokens: int) -> tuple[int, int]:
    """How many tokens of A and of B `truncate_seq_pair` keeps."""
    excess = length_a + length_b - max_num_tokens
    if excess <= 0:
        return length_a, length_b
    # What trimming one token at a time ends with, in closed form (most pairs of long sentences are cut by dozens
    # of tokens): the longer side gives tokens until the two are equal, then they alternate, B first on a tie.
    gap = abs(length_a - length_b)
    if excess <= gap:
        return (length_a - excess, length_b) if length_a > length_b else (length_a, length_b - excess)
    rest, shorter = excess - gap, min(length_a, length_b)
    return shorter - rest // 2, shorter - (rest + 1) // 2


def truncate_seq_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int) -> bool:
    """Trims the longer side, one token at a time, until both fit: A from its start, B from its end.

    Cutting only at the outer ends keeps the tokens either side of the A|B boundary, so a true
    continuation (IsNext, an SOP positive) still continues across it. The reference cuts either end
    at random, which often cuts that seam (google-research/bert#627); and cutting only the negatives
    at random would let a model read the label off a pair that stops mid-sentence at the join, so
    every pair is cut the same way. The lists are trimmed in place; True if anything was cut.
    """
    keep_a, keep_b = kept_lengths(len(tokens_a), len(tokens_b), max_num_tokens)
    cut = (keep_a, keep_b) != (len(tokens_a), len(tokens_b))
    del tokens_a[:len(tokens_a) - keep_a]
    del tokens_b[keep_b:]
    return cut


# The pairing works on spans of one flat token array: a document is its sentences' boundaries in that array
# (`bounds[d][i]` to `bounds[d][i + 1]` is sentence i), so A, B and their truncation are (start, end) numbers and
# no token is copied until the features are gathered, at once, in numpy (`features.build_span_features`).
# A pair is (a_start, a_end, b_start, b_end, label, truncated).

def _truncated_pair(a: tuple[int, int], b: tuple[int, int], label: int, max_num_tokens: int) -> tuple:
    """The pair with A cut from its start and B from its end, as `truncate_seq_pair` cuts token lists."""
    keep_a, keep_b = kept_lengths(a[1] - a[0], b[1] - b[0], max_num_tokens)
    truncated = (keep_a, keep_b) != (a[1] - a[0], b[1] - b[0])
    return a[1] - keep_a, a[1], b[0], b[0] + keep_b, label, truncated


def _random_span(bounds, doc_index, target_length, rng) -> tuple[int, int]:
    """Whole sentences from a random *other* document, from a random start, up to target_length."""
    other = rng.randrange(len(bounds) - 1)
    other += other >= doc_index
    document = bounds[other]
    first = rng.randrange(len(document) - 1)
    stop = first + 1
    while stop < len(document) - 1 and document[stop] - document[first] < target_length:
        stop += 1
    return document[first], document[stop]


def segment_spans(bounds, doc_index, *, max_num_tokens, short_seq_prob, nsp_probability, objective, rng):
    """Pairs from one document, A and B filled with whole sentences up to a target length."""
    document = bounds[doc_index]
    sentences = len(document) - 1
    target_length = rng.randint(2, max_num_tokens) if rng.random() < short_seq_prob else max_num_tokens
    pairs, first, i = [], 0, 0  # the chunk is sentences first..i
    while i < sentences:
        if i == sentences - 1 or document[i + 1] - document[first] >= target_length:
            negative = rng.random() < nsp_probability
            count = i + 1 - first
            if count == 1 and i + 1 < sentences and not (negative and objective == "nsp"):
                i += 1  # a positive (or SOP pair) needs B: take the next sentence even past the target
                count = 2
            if count >= 2 or (negative and objective == "nsp" and i + 1 < sentences):
                a_end = rng.randint(1, count - 1) if count >= 2 else 1
                a = (document[first], document[first + a_end])
                if negative and objective == "nsp":
                    b = _random_span(bounds, doc_index, target_length - (a[1] - a[0]), rng)
                    i -= count - a_end  # put back the segments B did not use
                else:
                    b = (document[first + a_end], document[first + count])
                    if negative:  # SOP: the negative is the same pair in swapped order
                        a, b = b, a
                pairs.append(_truncated_pair(a, b, int(negative), max_num_tokens))
            first = i + 1
        i += 1
    return pairs


def sentence_spans(bounds, doc_index, *, max_num_tokens, nsp_probability, objective, rng):
    """One sentence each side, the tutorial's shape: B is the next sentence or one from another document."""
    document = bounds[doc_index]
    pairs, i = [], 0
    while i < len(document) - 2:
        negative = rng.random() < nsp_probability
        a = (document[i], document[i + 1])
        if negative and objective == "nsp":
            other = rng.randrange(len(bounds) - 1)
            other += other >= doc_index
            j = rng.choice(range(len(bounds[other]) - 1))
            b = (bounds[other][j], bounds[other][j + 1])
            i += 1
        else:
            b = (document[i + 1], document[i + 2])
            if negative:
                a, b = b, a
            i += 2
        pairs.append(_truncated_pair(a, b, int(negative), max_num_tokens))
    return pairs


def pair_spans(bounds, *, max_num_tokens, short_seq_prob=0.1, nsp_probability=0.5, pairing="segments",
               objective="nsp", rng: random.Random):
    """All NSP or SOP pairs of a group of documents, as spans; NSP negatives come from the group's other documents.

    Args:
        bounds: Per document, its sentences' boundaries in the group's token array (one more than its sentences).
        Others as in `make_pairs`.
    """
    if objective == "nsp" and len(bounds) < 2:
        return []
    spans = []
    for doc_index in range(len(bounds)):
        if pairing == "sentences":
            spans += sentence_spans(bounds, doc_index, max_num_tokens=max_num_tokens,
                                    nsp_probability=nsp_probability, objective=objective, rng=rng)
        else:
            spans += segment_spans(bounds, doc_index, max_num_tokens=max_num_tokens, short_seq_prob=short_seq_prob,
                                   nsp_probability=nsp_probability, objective=objective, rng=rng)
    return spans


def sentence_bounds(documents: list[list[list[int]]]) -> list[list[int]]:
    """Each document's sentence boundaries in the documents' tokens laid end to end."""
    bounds, position = [], 0
    for document in documents:
        starts = [position]
        for sentence in document:
            position += len(sentence)
            starts.append(position)
        bounds.append(starts)
    return bounds


def make_packed_segments(document, *, max_num_tokens):
    """MLM only (RoBERTa's DOC-SENTENCES): whole sentences packed up to max_num_tokens, no B."""
    segments, current = [], []
    for sentence in document:
        if current and len(current) + len(sentence) > max_num_tokens:
            segments.append((current, [], -1, False))
            current = []
        current = current + sentence[:max_num_tokens]
    if current:
        segments.append((current, [], -1, False))
    return segments


def make_pairs(documents, *, max_num_tokens, short_seq_prob=0.1, nsp_probability=0.5, pairing="segments",
               objective="nsp", rng: random.Random):
    """All pairs of a group of documents; NSP negatives come from the other documents of the group.

    Args:
        documents: Documents, each a list of sentences, each a list of token ids.
        max_num_tokens: Budget for A + B (max_seq_length minus the special tokens).
        short_seq_prob: Chance of a shorter target length (segments pairing).
        nsp_probability: Share of negatives (label 1).
        pairing: "segments" (reference) or "sentences" (one sentence a side).
        objective: "nsp", "sop" or "mlm".
        rng: The seeded generator all draws come from.

    Returns:
        A list of (tokens_a, tokens_b, label, truncated).
    """
    if objective == "mlm":
        return [seg for document in documents for seg in make_packed_segments(document, max_num_tokens=max_num_tokens)]
    tokens = list(chain.from_iterable(chain.from_iterable(documents)))
    spans = pair_spans(sentence_bounds(documents), max_num_tokens=max_num_tokens, short_seq_prob=short_seq_prob,
                       nsp_probability=nsp_probability, pairing=pairing, objective=objective, rng=rng)
    return [(tokens[a0:a1], tokens[b0:b1], label, truncated) for a0, a1, b0, b1, label, truncated in spans]
