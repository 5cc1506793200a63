"""Prepared dataset -> what the model is fed, for people (`text`) and for tools (`jsonl`).

    bert-pretrain inspect --config recipes/quickstart.yaml --num_examples 5
    bert-pretrain inspect --config recipes/quickstart.yaml --num_examples 100 --format jsonl
"""

import json

from pipeline.stats import format_stats

LABELS = {"nsp": {0: "IsNext", 1: "NotNext (B from another document)"},
          "sop": {0: "InOrder", 1: "Swapped"}}


def first_examples(train, num_examples: int) -> list[dict]:
    """The first examples of draw 0 (epoch 0's pairs), model columns only."""
    if "epoch" in train.column_names:
        train = train.filter(lambda e: [x == 0 for x in e], input_columns="epoch", batched=True, keep_in_memory=True)
    keep = [c for c in ("input_ids", "token_type_ids", "next_sentence_label") if c in train.column_names]
    return list(train.select_columns(keep).select(range(min(num_examples, len(train)))))


def render_example(tokenizer, input_ids, original_ids, labels, token_type_ids) -> str:
    """`[CLS] A [SEP] B [SEP]`; a predicted position shows as <shown=original>, padding is left out."""
    pieces = []
    for shown, original, label, segment in zip(input_ids, original_ids, labels, token_type_ids):
        if shown == tokenizer.pad_token_id and label == -100:
            continue
        token = tokenizer.convert_ids_to_tokens(int(shown))
        if label != -100:
            token = f"<{token}={tokenizer.convert_ids_to_tokens(int(original))}>"
        pieces.append(token)
    return " ".join(pieces).replace(" ##", "").replace("<##", "<")


def histogram_lines(histogram: dict[str, int], width: int = 40) -> list[str]:
    top = max(histogram.values()) or 1
    return [f"  {label:>8} tokens {count:>8,} {'#' * round(width * count / top)}" for label, count in histogram.items()]


def inspect_dataset(dataset, stats: dict, tokenizer, collator, *, num_examples: int, output_format: str,
                    objective: str) -> str:
    """The report for `bert-pretrain inspect`, as one string."""
    examples = first_examples(dataset["train"], num_examples)
    batch = collator([dict(e) for e in examples]) if examples else {}
    rows = [{k: v[i].tolist() for k, v in batch.items()} for i in range(len(examples))]
    if output_format == "jsonl":
        return "\n".join(json.dumps(row) for row in rows)

    lines = ["Corpus", format_stats(stats), "", "Sentence lengths"]
    lines += histogram_lines(stats["sentence_length_histogram"])
    lines += ["", f"First {len(rows)} training examples, masked as in training (<shown=original> marks a "
                  "predicted token):"]
    for i, (row, example) in enumerate(zip(rows, examples)):
        original = example["input_ids"] + [tokenizer.pad_token_id] * (len(row["input_ids"]) - len(example["input_ids"]))
        label = row.get("next_sentence_label")
        head = f"#{i} label {label} {LABELS[objective][label]}" if label is not None else f"#{i} (MLM only)"
        lines += ["", f"{head}, {len(example['input_ids'])} tokens, {sum(x != -100 for x in row['labels'])} masked",
                  render_example(tokenizer, row["input_ids"], original, row["labels"], row["token_type_ids"])]
    return "\n".join(lines)
