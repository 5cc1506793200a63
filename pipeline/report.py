"""Evaluation results -> the closing summary a user reads."""

ROWS = (("mlm_loss", "MLM loss", "{:.3f}"), ("perplexity", "MLM perplexity", "{:.1f}"),
        ("mlm_accuracy", "MLM accuracy", "{:.1%}"), ("nsp_loss", "NSP loss", "{:.3f}"),
        ("nsp_accuracy", "NSP accuracy", "{:.1%}"), ("sop_loss", "SOP loss", "{:.3f}"),
        ("sop_accuracy", "SOP accuracy", "{:.1%}"))


def metrics_table(before: dict, after: dict, prefix: str = "eval_") -> str:
    """A before/after table of the held-out metrics both dicts have."""
    lines = [f"{'held-out':<16}{'before':>10}{'after':>10}"]
    for key, label, fmt in ROWS:
        if prefix + key in before and prefix + key in after:
            lines.append(f"{label:<16}{fmt.format(before[prefix + key]):>10}{fmt.format(after[prefix + key]):>10}")
    return "\n".join(lines)


def format_summary(before: dict, after: dict, output_dir: str, model_class: str = "BertForPreTraining") -> str:
    return "\n".join([
        "",
        metrics_table(before, after),
        "",
        f"Model saved in {output_dir}. Load it with:",
        f"    from transformers import {model_class}, AutoTokenizer",
        f"    model = {model_class}.from_pretrained({output_dir!r}); "
        f"tokenizer = AutoTokenizer.from_pretrained({output_dir!r})",
    ])
