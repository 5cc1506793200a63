"""Prepared dataset -> its statistics (documents, sentences, tokens, examples, truncation, balance) and their text."""

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict


def _columns(dataset: Dataset, names: list[str]) -> dict:
    # select_columns first: through an indices mapping (filter, split), formatting gathers whole rows,
    # token lists included, which would put the whole corpus in memory. Arrow, not numpy, formatting: numpy's
    # checks every value (a second at 50 MB of corpus); the columns are numbers, read without a copy.
    if not len(dataset):
        return {n: np.zeros(0) for n in names}
    table = dataset.select_columns(names).with_format("arrow")[:]
    return {n: table.column(n).to_numpy() for n in names}


def sentence_length_histogram(documents: DatasetDict, edges=(8, 16, 32, 64, 128, 256)) -> dict[str, int]:
    """Tokens per sentence over every split, counted in bins, straight from the Arrow columns.

    Rows a filter hid are still in the table, but only empty documents are ever filtered out.
    """
    lengths = np.concatenate([pc.list_value_length(pc.list_flatten(docs.data.column("sentences"))).to_numpy()
                              for docs in documents.values()])
    bounds = (0, *edges, np.inf)
    counts, _ = np.histogram(lengths, bins=bounds)
    labels = [f"{lo + 1}-{hi}" for lo, hi in zip(bounds[:-2], bounds[1:-1])] + [f">{edges[-1]}"]
    return dict(zip(labels, counts.tolist()))


def compute_stats(documents: DatasetDict, features: DatasetDict) -> dict:
    """Per split: documents, sentences and tokens in, examples (per draw) out, their mean length, truncation and
    negative shares; without gathering the token columns, so memory stays flat as the corpus grows."""
    stats = {}
    for split in features:
        docs = _columns(documents[split], ["num_sentences", "num_tokens"])
        names = ["length", "truncated"] + (["next_sentence_label"] if "next_sentence_label" in features[split].column_names else [])
        feats = _columns(features[split], names)
        draws = len(set(features[split].unique("epoch"))) if "epoch" in features[split].column_names else 1
        n = len(features[split])
        s = {
            "documents": len(documents[split]),
            "sentences": int(docs["num_sentences"].sum()),
            "tokens": int(docs["num_tokens"].sum()),
            "examples": n // draws,
            "draws": draws,
            "example_tokens": int(feats["length"].sum()),
            "mean_example_length": float(feats["length"].mean()) if n else 0.0,
            "truncated_share": float(feats["truncated"].mean()) if n else 0.0,
        }
        if "next_sentence_label" in feats and n:
            s["negative_share"] = float(feats["next_sentence_label"].mean())
        stats[split] = s
    return stats


def format_stats(stats: dict) -> str:
    """One line per split, as `prepare` and `train` print them."""
    lines = []
    for split, s in stats.items():
        if split == "sentence_length_histogram":
            continue
        draws = f" x {s['draws']} draws" if s.get("draws", 1) > 1 else ""
        line = (f"{split:>10}: {s['documents']:,} documents, {s['sentences']:,} sentences, {s['tokens']:,} tokens -> "
                f"{s['examples']:,} examples{draws} (mean {s['mean_example_length']:.0f} tokens, "
                f"{100 * s['truncated_share']:.1f}% truncated")
        if "negative_share" in s:
            line += f", {100 * s['negative_share']:.1f}% negatives"
        lines.append(line + ")")
    return "\n".join(lines)
