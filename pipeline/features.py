"""Sentence pairs -> model inputs: the tokenizer's special tokens around A and B, token types, next_sentence_label."""

import copy
from dataclasses import dataclass

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
    The columns are built as flat numpy arrays and offsets: a list per row for every token
    type id would cost more than the pairing itself.
    """
    flat, runs, run_types = [], [], []
    for tokens_a, tokens_b, label, _ in pairs:
        items, types = (template.pair, template.pair_types) if label >= 0 else (template.single, template.single_types)
        for item, token_type in zip(items, types):
            if item == A or item == B:
                segment = tokens_a if item == A else tokens_b
                flat += segment
                runs.append(len(segment))
            else:
                flat.append(item)
                runs.append(1)
            run_types.append(token_type)
    lengths = np.array([len(p[0]) + (len(p[1]) + template.num_special(True) if p[2] >= 0 else
                                     template.num_special(False)) for p in pairs], dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    types = np.repeat(np.array(run_types, dtype=np.int8), np.array(runs, dtype=np.int64))
    columns = {
        "input_ids": pa.ListArray.from_arrays(offsets, pa.array(np.array(flat, dtype=np.int32))),
        "token_type_ids": pa.ListArray.from_arrays(offsets, pa.array(types)),
        "truncated": pa.array([p[3] for p in pairs], pa.bool_()),
        "length": pa.array(lengths),
    }
    if not pairs or pairs[0][2] >= 0:
        columns["next_sentence_label"] = pa.array([p[2] for p in pairs], pa.int64())
    return pa.table(columns)
