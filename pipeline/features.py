"""Sentence pairs -> model inputs: `[CLS] A [SEP] B [SEP]`, token_type_ids, next_sentence_label."""

import numpy as np
import pyarrow as pa


def build_features(pairs, *, cls_token_id: int, sep_token_id: int) -> pa.Table:
    """Columns for a batch of (tokens_a, tokens_b, label, truncated) pairs, as an Arrow table.

    A pair with no B (label -1, MLM only) becomes `[CLS] A [SEP]` with no next_sentence_label.
    The columns are built as flat numpy arrays and offsets: a list per row for every token
    type id would cost more than the pairing itself.
    """
    flat = []
    for tokens_a, tokens_b, label, _ in pairs:
        flat.append(cls_token_id)
        flat += tokens_a
        flat.append(sep_token_id)
        if label >= 0:
            flat += tokens_b
            flat.append(sep_token_id)
    a_lengths = np.array([len(p[0]) + 2 for p in pairs], dtype=np.int32)
    b_lengths = np.array([len(p[1]) + 1 if p[2] >= 0 else 0 for p in pairs], dtype=np.int32)
    lengths = a_lengths + b_lengths
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    types = np.repeat(np.tile(np.array([0, 1], dtype=np.int8), len(pairs)), np.stack([a_lengths, b_lengths], 1).ravel())
    columns = {
        "input_ids": pa.ListArray.from_arrays(offsets, pa.array(np.array(flat, dtype=np.int32))),
        "token_type_ids": pa.ListArray.from_arrays(offsets, pa.array(types)),
        "truncated": pa.array([p[3] for p in pairs], pa.bool_()),
        "length": pa.array(lengths),
    }
    if not pairs or pairs[0][2] >= 0:
        columns["next_sentence_label"] = pa.array([p[2] for p in pairs], pa.int64())
    return pa.table(columns)
