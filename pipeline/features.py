"""Sentence pairs -> model inputs: the tokenizer's special tokens around A and B, token types, next_sentence_label."""

import copy
from dataclasses import dataclass
from itertools import chain

import numpy as np
import pyarrow as pa

# Where a segment goes in a template (special tokens are ids, never negative).
A, B = -1, -2


@dataclass(frozen=True)
class Template:
    """The special tokens a tokenizer puts around one segment and around a pair, and every item's token type.

    Items are special-token ids, or `A` / `B` for where each segment's tokens go. BERT's is
    `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]` with types 0 0 0 and 0 0 0 1 1; RoBERTa's is
    `<s> A </s>` and `<s> A </s> </s> B </s>`, all of type 0.
    """

    single: tuple[int, ...]
    single_types: tuple[int, ...]
    pair: tuple[int, ...]
    pair_types: tuple[int, ...]

    def num_special(self, pair: bool) -> int:
        """How many special tokens an example with (pair) or without B carries."""
        return len(self.pair if pair else self.single) - (2 if pair else 1)


def special_template(tokenizer) -> Template:
    """The tokenizer's own template, read from what its post-processor does to a one-token A and B.

    Never written by hand: whatever the family (BERT, RoBERTa's doubled separator, a model without token
    types), the examples get exactly the special tokens and types the tokenizer itself would give them.
    """
    backend = copy.deepcopy(tokenizer.backend_tokenizer)  # a checkpoint's tokenizer.json may pad or truncate
    backend.no_padding()
    backend.no_truncation()

    def items(encoding) -> tuple[tuple[int, ...], tuple[int, ...]]:
        ids, types = [], []
        for token, sequence, token_type in zip(encoding.ids, encoding.sequence_ids, encoding.type_ids):
            item = token if sequence is None else (A, B)[sequence]
            if item in (A, B) and ids and ids[-1] == item:
                continue  # a segment that came out as several tokens is still one place
            ids.append(item)
            types.append(token_type)
        return tuple(ids), tuple(types)

    return Template(*items(backend.encode("a")), *items(backend.encode("a", "b")))


def build_features(pairs, *, template: Template) -> pa.Table:
    """Columns for a batch of (tokens_a, tokens_b, label, truncated) pairs, as an Arrow table.

    A pair with no B (label -1, MLM only) gets the single-segment template and no next_sentence_label.
    """
    lengths = np.fromiter((len(side) for a, b, *_ in pairs for side in (a, b)), np.int64, 2 * len(pairs))
    ends = np.cumsum(lengths)
    tokens = np.fromiter(chain.from_iterable(side for a, b, *_ in pairs for side in (a, b)), np.int32,
                         int(ends[-1]) if len(pairs) else 0)
    spans = np.stack([ends - lengths, ends]).T.reshape(-1, 4) if len(pairs) else np.zeros((0, 4), np.int64)
    return build_span_features(tokens, spans, np.fromiter((p[2] for p in pairs), np.int64, len(pairs)),
                               np.fromiter((p[3] for p in pairs), bool, len(pairs)), template=template)


def build_span_features(tokens: np.ndarray, spans: np.ndarray, labels: np.ndarray, truncated: np.ndarray, *,
                        template: Template) -> pa.Table:
    """Columns for a batch of pairs given as spans of `tokens`, as an Arrow table.

    `spans` is one row per pair: A's start and end, then B's, indices into `tokens`; `labels` the
    next_sentence_label (-1: no B, MLM only, the single-segment template). Every input id is gathered from
    `tokens` in one numpy indexing: no Python list per row or per token.
    """
    n = len(labels)
    specials = sorted({item for item in template.pair + template.single if item >= 0})
    source = np.concatenate([tokens.astype(np.int32, copy=False), np.array(specials, dtype=np.int32)])
    # Each row's template, items as columns (the shorter template padded with empty runs): a run is one special
    # token or a segment, read from `source` at its start; token types repeat over the runs.
    width = max(len(template.pair), len(template.single))

    def padded(values, fill):
        return np.array(list(values) + [fill] * (width - len(values)), dtype=np.int64)

    is_pair = (labels >= 0)[:, None]
    items = np.where(is_pair, padded(template.pair, B - 1), padded(template.single, B - 1))
    item_types = np.where(is_pair, padded(template.pair_types, 0), padded(template.single_types, 0))
    a_start, a_end, b_start, b_end = (spans[:, k:k + 1].astype(np.int64) for k in range(4))
    special_at = len(tokens) + np.searchsorted(np.array(specials, dtype=np.int64), items)
    kinds = [items == A, items == B, items >= 0]  # else: a padding column, an empty run
    runs = np.select(kinds, [a_end - a_start, b_end - b_start, 1], 0).ravel()
    starts = np.select(kinds, [a_start, b_start, special_at], 0).ravel()
    run_offsets = np.cumsum(runs) - runs
    ids = source[np.arange(runs.sum()) + np.repeat(starts - run_offsets, runs)]
    lengths = runs.reshape(n, width).sum(axis=1).astype(np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    columns = {
        "input_ids": pa.ListArray.from_arrays(offsets, pa.array(ids)),
        "token_type_ids": pa.ListArray.from_arrays(offsets, pa.array(np.repeat(item_types.ravel().astype(np.int8),
                                                                             runs))),
        "truncated": pa.array(truncated.astype(bool)),
        "length": pa.array(lengths),
    }
    if not n or labels[0] >= 0:
        columns["next_sentence_label"] = pa.array(labels.astype(np.int64))
    return pa.table(columns)
