"""Training logs -> what a user reads: the closing summary, report.json, report.png and the model card."""

import json
import os

from pipeline.probes import format_predictions

ROWS = (("mlm_loss", "MLM loss", "{:.3f}"), ("perplexity", "MLM perplexity", "{:.1f}"),
        ("mlm_accuracy", "MLM accuracy", "{:.1%}"), ("nsp_loss", "NSP loss", "{:.3f}"),
        ("nsp_accuracy", "NSP accuracy", "{:.1%}"), ("sop_loss", "SOP loss", "{:.3f}"),
        ("sop_accuracy", "SOP accuracy", "{:.1%}"))
HEADS = (("mlm_loss", "MLM"), ("nsp_loss", "NSP"), ("sop_loss", "SOP"))


def eval_prefixes(metrics: dict) -> list[tuple[str, str]]:
    """(key prefix, title) of each evaluated set: held-out alone, or held-out and general-domain."""
    if any(k.startswith("eval_general_") for k in metrics):
        return [("eval_heldout_", "held-out"), ("eval_general_", "general")]
    return [("eval_", "held-out")]


def metrics_table(columns: dict[str, dict], prefix: str = "eval_", title: str = "held-out") -> str:
    """A table of the metrics every column has, e.g. {"before": {...}, "after": {...}}."""
    lines = [f"{title:<16}" + "".join(f"{name:>10}" for name in columns)]
    for key, label, fmt in ROWS:
        if all(prefix + key in c for c in columns.values()):
            lines.append(f"{label:<16}" + "".join(f"{fmt.format(c[prefix + key]):>10}" for c in columns.values()))
    return "\n".join(lines)


def metrics_tables(columns: dict[str, dict]) -> str:
    first = next(iter(columns.values()))
    return "\n\n".join(metrics_table(columns, prefix, title) for prefix, title in eval_prefixes(first))


def evaluations(log_history: list[dict]) -> list[dict]:
    """Eval log entries merged per step (Trainer logs each evaluated set as its own entry)."""
    merged: dict[int, dict] = {}
    for entry in log_history:
        if any(k.startswith("eval_") for k in entry):
            merged.setdefault(entry["step"], {}).update(entry)
    return list(merged.values())


def probe_lines(probes: dict) -> list[str]:
    """`probes` maps prompt -> {"before": [...], "after": [...]}."""
    lines = []
    for prompt, result in probes.items():
        lines.append(f"  {prompt}")
        for when in ("before", "after"):
            lines.append(f"    {when:>6}: {format_predictions(result[when])}")
    return lines


def vocabulary_lines(vocabulary: dict) -> list[str]:
    """Fertility before and after, and what changed; `vocabulary` is `VocabularyChange.to_dict()`."""
    rows = [("word-pieces per word", "pieces_per_word", "{:.3f}"), ("[UNK] rate", "unk_rate", "{:.2%}"),
            ("words in 3+ pieces", "split_3plus_rate", "{:.1%}")]
    lines = [f"{'vocabulary':<22}{'before':>10}{'after':>10}"]
    lines += [f"{label:<22}{fmt.format(vocabulary['before'][key]):>10}{fmt.format(vocabulary['after'][key]):>10}"
              for label, key, fmt in rows]
    lines.append(f"{'tokens':<22}{vocabulary['vocab_size_before']:>10,}{vocabulary['vocab_size']:>10,}")
    if vocabulary["from_scratch"]:
        lines.append("A WordPiece tokenizer trained from scratch on the training documents.")
    else:
        lines.append(f"{vocabulary['added']:,} domain tokens added ({vocabulary['into_unused']:,} into [unused] slots, "
                     f"{vocabulary['appended']:,} appended), each starting as the mean of its old pieces.")
    return lines


def format_summary(before: dict, after: dict, output_dir: str, model_class: str = "BertForPreTraining",
                   probes: dict | None = None, vocabulary: dict | None = None) -> str:
    lines = ["", metrics_tables({"before": before, "after": after})]
    if vocabulary:
        lines += ["", *vocabulary_lines(vocabulary)]
    if probes:
        lines += ["", "Probes (top-5 fill-mask predictions):", *probe_lines(probes)]
    lines += [
        "",
        f"Model saved in {output_dir} (report: {os.path.join(output_dir, 'report.json')}, report.png). Load it with:",
        f"    from transformers import {model_class}, AutoTokenizer",
        f"    model = {model_class}.from_pretrained({output_dir!r}); "
        f"tokenizer = AutoTokenizer.from_pretrained({output_dir!r})",
    ]
    return "\n".join(lines)


def build_report(*, log_history: list[dict], before: dict, after: dict, stats: dict, recipe: dict,
                 timings: dict, real_tokens: int, probes: dict, probe_history: list[dict],
                 vocabulary: dict | None = None) -> dict:
    train_seconds = timings.get("train_seconds") or 0.0
    return {
        "before": before,
        "after": after,
        "train": [h for h in log_history if "loss" in h],
        "eval": evaluations(log_history),
        "log_history": log_history,
        "corpus": stats,
        "recipe": recipe,
        "timings": timings,
        "real_tokens": real_tokens,
        "real_tokens_per_second": real_tokens / train_seconds if train_seconds else None,
        "probes": probes,
        "probe_history": probe_history,
        "vocabulary": vocabulary,
    }


def write_report(report: dict, output_dir: str) -> None:
    with open(os.path.join(output_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    plot_report(report, os.path.join(output_dir, "report.png"))


def plot_report(report: dict, path: str) -> None:
    """Loss per head over steps (train and held-out) and before/after bars, in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefixes = eval_prefixes(report["after"])
    heads = [(key, name) for key, name in HEADS
             if any(key in h for h in report["train"]) or any(p + key in report["after"] for p, _ in prefixes)]
    fig, axes = plt.subplots(1, len(heads) + 1, figsize=(5 * (len(heads) + 1), 4), squeeze=False)
    axes = axes[0]
    for ax, (key, name) in zip(axes, heads):
        train = [(h["step"], h[key]) for h in report["train"] if key in h]
        if train:
            ax.plot(*zip(*train), label="train", color="tab:blue")
        for prefix, title in prefixes:
            points = [(h["step"], h[prefix + key]) for h in report["eval"] if prefix + key in h]
            if points:
                ax.plot(*zip(*points), "o-", label=title, color="tab:orange" if title == "held-out" else "tab:green")
        ax.set_title(f"{name} loss")
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
    bars = [(f"{name} acc" + ("" if title == "held-out" else f"\n({title})"), prefix + key.replace("loss", "accuracy"))
            for key, name in heads for prefix, title in prefixes]
    bars = [(label, key) for label, key in bars if key in report["before"] and key in report["after"]]
    ax = axes[-1]
    xs = range(len(bars))
    ax.bar([x - 0.2 for x in xs], [report["before"][k] for _, k in bars], 0.4, label="before", color="tab:gray")
    ax.bar([x + 0.2 for x in xs], [report["after"][k] for _, k in bars], 0.4, label="after", color="tab:blue")
    ax.set_xticks(list(xs), [label for label, _ in bars])
    ax.set_ylim(0, 1)
    ax.set_title("held-out accuracy, before and after")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_model_card(output_dir: str, *, base_model: str, report: dict, model_class: str) -> None:
    """A Hub-ready README.md: what was trained on what, how, and what it changed."""
    recipe, corpus = report["recipe"], report["corpus"]
    train = corpus.get("train", {})
    objective = recipe.get("objective", "nsp")
    vocabulary = report.get("vocabulary")
    scratch = bool(vocabulary and vocabulary["from_scratch"])
    on_hub = not scratch and not os.path.exists(base_model) and not base_model.startswith("package:")
    lines = [
        "---",
        "library_name: transformers",
        *([f"base_model: {base_model}"] if on_hub else []),
        "pipeline_tag: fill-mask",
        "tags: [bert, domain-adaptation, bert-pretrain]",
        "---",
        "",
        f"# {os.path.basename(os.path.abspath(output_dir))}",
        "",
        (f"A BERT of `{recipe.get('config_name')}`'s architecture pre-trained from scratch, with a new WordPiece "
         "tokenizer, on domain text with " if scratch else f"`{base_model}` further pre-trained on domain text with ")
        + ("masked-language modelling only." if objective == "mlm" else
           f"masked-language modelling and {'next-sentence' if objective == 'nsp' else 'sentence-order'} prediction."),
        "",
        "## Corpus",
        "",
        f"{train.get('documents', 0):,} documents, {train.get('sentences', 0):,} sentences, "
        f"{train.get('tokens', 0):,} tokens in training; {corpus.get('validation', {}).get('documents', 0):,} "
        "documents held out for evaluation.",
        "",
        "## Training",
        "",
        f"- objective: {objective}, pairing: {recipe.get('pairing')}, max_seq_length: {recipe.get('max_seq_length')}",
        f"- masking: mlm_probability {recipe.get('mlm_probability')}, [MASK]/random/kept "
        f"{recipe.get('mask_replace_prob')}/{recipe.get('random_replace_prob')}/"
        f"{1 - recipe.get('mask_replace_prob', 0.8) - recipe.get('random_replace_prob', 0.1):.2g}, "
        f"whole_word_mask {recipe.get('whole_word_mask')}, mask_count {recipe.get('mask_count')}",
        f"- epochs {recipe.get('num_train_epochs')}, learning_rate {recipe.get('learning_rate')}, "
        f"batch {recipe.get('per_device_train_batch_size')} per device, seed {recipe.get('seed')}",
        "",
        "## Held-out metrics",
        "",
        "```",
        metrics_tables({"before": report["before"], "after": report["after"]}),
        "```",
    ]
    if vocabulary:
        lines += ["", "## Vocabulary", "", "On the training documents:", "", "```", *vocabulary_lines(vocabulary), "```"]
    if report["probes"]:
        lines += ["", "## Probes (top-5 fill-mask predictions)", "", "```", *probe_lines(report["probes"]), "```"]
    lines += ["", "## Use", "", "```python", f"from transformers import {model_class}, AutoTokenizer",
              f'model = {model_class}.from_pretrained("{output_dir}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{output_dir}")', "```", ""]
    with open(os.path.join(output_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))
