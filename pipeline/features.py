"""Sentence pairs -> model inputs: `[CLS] A [SEP] B [SEP]`, token_type_ids, next_sentence_label."""


def build_features(pairs, *, cls_token_id: int, sep_token_id: int) -> dict[str, list]:
    """Columns for a batch of (tokens_a, tokens_b, label, truncated) pairs.

    A pair with no B (label -1, MLM only) becomes `[CLS] A [SEP]` with no next_sentence_label.
    """
    input_ids, token_type_ids, labels, truncated = [], [], [], []
    for tokens_a, tokens_b, label, cut in pairs:
        ids = [cls_token_id, *tokens_a, sep_token_id]
        types = [0] * len(ids)
        if label >= 0:
            ids += [*tokens_b, sep_token_id]
            types += [1] * (len(tokens_b) + 1)
        input_ids.append(ids)
        token_type_ids.append(types)
        labels.append(label)
        truncated.append(cut)
    columns = {"input_ids": input_ids, "token_type_ids": token_type_ids, "truncated": truncated,
               "length": [len(ids) for ids in input_ids]}
    if not pairs or pairs[0][2] >= 0:
        columns["next_sentence_label"] = labels
    return columns
