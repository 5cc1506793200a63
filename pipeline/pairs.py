"""Tokenized documents -> sentence pairs (A, B, label), after google-research/bert.

A document is a list of sentences, each a list of token ids. The segment
algorithm is `create_instances_from_document` of google-research/bert's
create_pretraining_data.py, with one change: the label is drawn *before* the
chunk is split, and a chunk that cannot have a true continuation (a single
last sentence) is never used as A whatever its label, so the share of
negatives equals `nsp_probability` instead of drifting above it.
"""

import random


def truncate_seq_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int) -> bool:
    """Trims the longer side, one token at a time, until both fit: A from its start, B from its end.

    Cutting only at the outer ends keeps the tokens either side of the A|B boundary, so a true
    continuation (IsNext, an SOP positive) still continues across it. The reference cuts either end
    at random, which often cuts that seam (google-research/bert#627); and cutting only the negatives
    at random would let a model read the label off a pair that stops mid-sentence at the join, so
    every pair is cut the same way. The lists are trimmed in place; True if anything was cut.
    """
    lengths = [len(tokens_a), len(tokens_b)]
    while sum(lengths) > max_num_tokens:
        lengths[0 if lengths[0] > lengths[1] else 1] -= 1
    cut = lengths != [len(tokens_a), len(tokens_b)]
    del tokens_a[:len(tokens_a) - lengths[0]]
    del tokens_b[lengths[1]:]
    return cut


def _flatten(sentences: list[list[int]]) -> list[int]:
    return [token for sentence in sentences for token in sentence]


def _random_segment(documents, doc_index, target_length, rng) -> list[int]:
    """Whole sentences from a random *other* document, from a random start, up to target_length."""
    other = rng.randrange(len(documents) - 1)
    other += other >= doc_index
    document = documents[other]
    tokens = []
    for sentence in document[rng.randrange(len(document)):]:
        tokens += sentence
        if len(tokens) >= target_length:
            break
    return tokens


def make_segment_pairs(documents, doc_index, *, max_num_tokens, short_seq_prob, nsp_probability, objective, rng):
    """Pairs from one document, A and B filled with whole sentences up to a target length."""
    document = documents[doc_index]
    target_length = rng.randint(2, max_num_tokens) if rng.random() < short_seq_prob else max_num_tokens
    pairs, chunk, chunk_length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i])
        if i == len(document) - 1 or chunk_length >= target_length:
            negative = rng.random() < nsp_probability
            if len(chunk) == 1 and i + 1 < len(document) and not (negative and objective == "nsp"):
                i += 1  # a positive (or SOP pair) needs B: take the next sentence even past the target
                chunk.append(document[i])
            if len(chunk) >= 2 or (negative and objective == "nsp" and i + 1 < len(document)):
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                tokens_a = _flatten(chunk[:a_end])
                if negative and objective == "nsp":
                    tokens_b = _random_segment(documents, doc_index, target_length - len(tokens_a), rng)
                    i -= len(chunk) - a_end  # put back the segments B did not use
                else:
                    tokens_b = _flatten(chunk[a_end:])
                    if negative:  # SOP: the negative is the same pair in swapped order
                        tokens_a, tokens_b = tokens_b, tokens_a
                truncated = truncate_seq_pair(tokens_a, tokens_b, max_num_tokens)
                pairs.append((tokens_a, tokens_b, int(negative), truncated))
            chunk, chunk_length = [], 0
        i += 1
    return pairs


def make_sentence_pairs(documents, doc_index, *, max_num_tokens, nsp_probability, objective, rng):
    """One sentence each side, the tutorial's shape: B is the next sentence or one from another document."""
    document = documents[doc_index]
    pairs, i = [], 0
    while i < len(document) - 1:
        negative = rng.random() < nsp_probability
        tokens_a = list(document[i])
        if negative and objective == "nsp":
            other = rng.randrange(len(documents) - 1)
            other += other >= doc_index
            tokens_b = list(rng.choice(documents[other]))
            i += 1
        else:
            tokens_b = list(document[i + 1])
            if negative:
                tokens_a, tokens_b = tokens_b, tokens_a
            i += 2
        truncated = truncate_seq_pair(tokens_a, tokens_b, max_num_tokens)
        pairs.append((tokens_a, tokens_b, int(negative), truncated))
    return pairs


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
    if objective == "nsp" and len(documents) < 2:
        return []
    pairs = []
    for doc_index in range(len(documents)):
        if pairing == "sentences":
            pairs += make_sentence_pairs(documents, doc_index, max_num_tokens=max_num_tokens,
                                         nsp_probability=nsp_probability, objective=objective, rng=rng)
        else:
            pairs += make_segment_pairs(documents, doc_index, max_num_tokens=max_num_tokens,
                                        short_seq_prob=short_seq_prob, nsp_probability=nsp_probability,
                                        objective=objective, rng=rng)
    return pairs
