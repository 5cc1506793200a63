"""Training logs -> what a user reads: the closing summary, report.json, report.png and the model card."""

import collections
import json
import math
import os
import platform
import re

from pipeline.families import FAMILIES, family_by_class
from pipeline.finetune import format_task
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


def final_evaluation(log_history: list[dict], global_step: int) -> dict:
    """The evaluation Trainer already ran at the last step, if it did (else {}): no need to evaluate twice."""
    last = next(iter(evaluations(log_history)[-1:]), {})
    return last if global_step > 0 and last.get("step") == global_step else {}


def describe_hardware(device, processes: int) -> str:
    """What trained, in words: `2 x NVIDIA H100 80GB HBM3` or `CPU: AMD EPYC 9R14 (2 cores)`."""
    import torch

    if device.type == "cuda":
        return f"{processes} x {torch.cuda.get_device_name(device)}"
    if device.type != "cpu":
        return f"{processes} x {device.type}"
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        name = ""
    cpu = f"CPU: {name or platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
    return cpu if processes == 1 else f"{processes} processes on {cpu}"


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
                 vocabulary: dict | None = None, training: dict | None = None, prepared: dict | None = None,
                 task: dict | None = None) -> dict:
    train_seconds = timings.get("train_seconds") or 0.0
    return {
        "before": before,
        "after": after,
        "train": [h for h in log_history if "loss" in h],
        "eval": evaluations(log_history),
        "log_history": log_history,
        "corpus": stats,
        "prepared": prepared,
        "recipe": recipe,
        "training": training or {},
        "timings": timings,
        "real_tokens": real_tokens,
        "real_tokens_per_second": real_tokens / train_seconds if train_seconds else None,
        "probes": probes,
        "probe_history": probe_history,
        "vocabulary": vocabulary,
        "task": task,
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
    panels = len(heads) + 1 + bool(report.get("task"))
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    axes = axes[0]
    if report.get("task"):
        draw_task(axes[-1], report["task"])
        axes = axes[:-1]
    for ax, (key, name) in zip(axes, heads):
        train = [(h["step"], h[key]) for h in report["train"] if key in h]
        if train:
            ax.plot(*zip(*train), label="train", color="tab:blue")
        for prefix, title in prefixes:
            points = [(h["step"], h[prefix + key]) for h in report["eval"] if prefix + key in h]
            if points:
                ax.plot(*zip(*points), "o-", label=title, color="tab:orange" if title == "held-out" else "tab:green")
        if key != "mlm_loss":  # a sentence head guessing scores ln 2; without the line a 0.696 -> 0.687 fills the axis
            ax.axhline(math.log(2), color="tab:red", linestyle="--", linewidth=1, label="chance (ln 2)")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.08)  # from 0, so a small change looks small; room above the top line
        ax.set_title(f"{name} loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats)")
        ax.legend()
        ax.grid(alpha=0.3)
    bars = [(f"{name} acc" + ("" if title == "held-out" else f"\n({title})"), prefix + key.replace("loss", "accuracy"))
            for key, name in heads for prefix, title in prefixes]
    bars = [(label, key) for label, key in bars if key in report["before"] and key in report["after"]]
    ax = axes[-1]
    xs = range(len(bars))
    for shift, when, color in ((-0.2, "before", "tab:gray"), (0.2, "after", "tab:blue")):
        drawn = ax.bar([x + shift for x in xs], [report[when][k] for _, k in bars], 0.4, label=when, color=color)
        ax.bar_label(drawn, fmt="{:.1%}", fontsize=8)
    for x, (_, key) in zip(xs, bars):
        if "mlm_" not in key:  # a two-way sentence head guessing gets half right
            ax.hlines(0.5, x - 0.45, x + 0.45, color="tab:red", linestyle="--", linewidth=1,
                      label="chance" if "chance" not in ax.get_legend_handles_labels()[1] else None)
    ax.set_xticks(list(xs), [label for label, _ in bars])
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy")
    ax.set_title("held-out accuracy, before and after")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_task(ax, task: dict) -> None:
    """A bar per model and metric at its mean over the seeds, with the spread as an error bar."""
    names, metrics = list(task["models"]), task["metrics"]
    width = 0.8 / len(names)
    colors = ("tab:gray", "tab:blue", "tab:green", "tab:orange")
    for i, name in enumerate(names):
        xs = [m + (i - (len(names) - 1) / 2) * width for m in range(len(metrics))]
        means = [task["models"][name][key]["mean"] for key, _ in metrics]
        spreads = [task["models"][name][key]["std"] for key, _ in metrics]
        drawn = ax.bar(xs, means, width, yerr=spreads, capsize=4, label=name, color=colors[i % len(colors)])
        ax.bar_label(drawn, fmt="{:.1%}", fontsize=8, padding=2)
    ax.set_xticks(range(len(metrics)), [label for _, label in metrics])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("test score (mean ± sd over seeds)")
    ax.set_title(f"task: {task['task']} ({task['mode']}, {len(task['seeds'])} seeds)")
    ax.legend()


def plot_task(task: dict, path: str) -> None:
    """The task probe's bars alone (`bert-pretrain probe`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    draw_task(ax, task)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


HUB_ID = r"[A-Za-z0-9][\w.-]*/[\w.-]+"


def base_model_card(model_name_or_path: str) -> tuple[str | None, str | None]:
    """(Hub id, licence) of the model a run started from.

    A Hub id is its own; a local folder or packaged model names its Hub id in its own model card (the repository
    its usage snippets load) or else in its config's `_name_or_path`, and its licence in the card's metadata. The
    card of a Hub model is read only if it is in the local cache or the Hub can be reached.
    """
    from huggingface_hub import ModelCard, hf_hub_download

    from pipeline.tokenizer import resolve_model_path

    path = resolve_model_path(model_name_or_path)
    local = os.path.isdir(path)
    card_path = os.path.join(path, "README.md")
    if not local:
        try:
            card_path = hf_hub_download(model_name_or_path, "README.md")
        except Exception:  # offline, no card, or a private repository: the licence stays unknown
            return model_name_or_path, None
    try:
        card = ModelCard.load(card_path)
    except Exception:  # no card, or one whose metadata does not parse
        card = None
    hub_id = None if local else model_name_or_path
    if local and card is not None:
        loaded = re.findall(rf"""(?:from_pretrained|SentenceTransformer|pipeline)\([^)]*?['"]({HUB_ID})['"]""", card.text)
        loaded = [name for name in loaded if not os.path.exists(name)]  # `outputs/run` of an earlier run is a folder
        hub_id = collections.Counter(loaded).most_common(1)[0][0] if loaded else None
    if local and hub_id is None:
        try:
            with open(os.path.join(path, "config.json")) as f:
                name = json.load(f).get("_name_or_path") or ""
        except (OSError, ValueError):
            name = ""
        hub_id = name if re.fullmatch(HUB_ID, name) and not os.path.exists(name) else None
    licence = card.data.get("license") if card is not None else None
    return hub_id, licence if isinstance(licence, str) else None


def card_metadata(*, base_model: str | None, licence: str | None, recipe: dict, after: dict, model_name: str,
                  scratch: bool, model_type: str = "bert", task_probe: dict | None = None):
    """The card's YAML header: lineage, licence, data, language, tags and the held-out results as a model-index."""
    from huggingface_hub import EvalResult, ModelCardData

    objective = recipe.get("objective", "nsp")
    corpus = recipe.get("dataset_name") or ", ".join(os.path.basename(f) for f in recipe.get("train_file") or [])
    dataset = {"dataset_type": recipe.get("dataset_name") or "text", "dataset_name": f"{corpus} (held-out documents)",
               "dataset_config": recipe.get("dataset_config_name"), "dataset_split": "validation"}
    prefix = "eval_heldout_" if any(k.startswith("eval_heldout_") for k in after) else "eval_"
    results = []
    for key, metric, name in (("mlm_loss", "loss", "MLM loss"), ("perplexity", "perplexity", "MLM perplexity"),
                              ("mlm_accuracy", "accuracy", "MLM accuracy")):
        if prefix + key in after:
            results.append(EvalResult(task_type="fill-mask", task_name="Masked language modelling", metric_type=metric,
                                      metric_name=name, metric_value=after[prefix + key], **dataset))
    if objective != "mlm":
        task = "Next-sentence prediction" if objective == "nsp" else "Sentence-order prediction"
        for key, metric in (("loss", "loss"), ("accuracy", "accuracy")):
            if f"{prefix}{objective}_{key}" in after:
                results.append(EvalResult(task_type="text-classification", task_name=task, metric_type=metric,
                                          metric_name=f"{objective.upper()} {key}",
                                          metric_value=after[f"{prefix}{objective}_{key}"], **dataset))
    if task_probe and "adapted" in task_probe["models"]:  # the card is the adapted model's: its results, seeds' mean
        kind = "token-classification" if task_probe["kind"] == "tokens" else "text-classification"
        for key, label in task_probe["metrics"]:
            score = task_probe["models"]["adapted"][key]
            results.append(EvalResult(
                task_type=kind, task_name=f"{task_probe['task']} ({task_probe['mode']} task probe)",
                dataset_type=kind, dataset_name=task_probe["task"], dataset_split="test",
                metric_type="f1" if key.endswith("_f1") else key,
                metric_name=f"{label} (mean of {len(task_probe['seeds'])} seeds, sd {score['std']:.3f})",
                metric_value=score["mean"],
                metric_config={"macro_f1": "macro", "entity_f1": "seqeval"}.get(key)))
    return ModelCardData(
        base_model=None if scratch else base_model, license=licence, language=[recipe.get("language") or "en"],
        datasets=[recipe["dataset_name"]] if recipe.get("dataset_name") else None, library_name="transformers",
        pipeline_tag="fill-mask", model_name=model_name,
        tags=[model_type, "fill-mask", "domain-adaptation", "bert-pretrain", objective], eval_results=results or None)


def write_model_card(output_dir: str, *, base_model: str, report: dict, model_class: str,
                     hub_model_id: str | None = None, save_directory: str | None = None) -> None:
    """A Hub-ready README.md for the model in output_dir: what was trained on what, how, and what it changed; its
    metadata carries the base model, licence, data, language and the held-out results in the Hub's model-index
    schema. Written into save_directory if given (a staging folder), else into output_dir."""
    recipe, corpus, training = report["recipe"], report["corpus"], report.get("training", {})
    train = corpus.get("train", {})
    objective = recipe.get("objective", "nsp")
    vocabulary = report.get("vocabulary")
    scratch = bool(vocabulary and vocabulary["from_scratch"])
    hub_id, licence = base_model_card(base_model) if not scratch else (None, None)
    family = family_by_class(model_class) or FAMILIES["bert"]
    a_family = family.a_name[0].upper() + family.a_name[1:]  # "A RoBERTa", "An ALBERT"
    name = hub_model_id or os.path.basename(os.path.abspath(output_dir))
    corpus_name = recipe.get("dataset_name") or ", ".join(os.path.basename(f) for f in recipe.get("train_file") or [])
    metadata = card_metadata(base_model=hub_id, licence=licence, recipe=recipe, after=report["after"],
                             model_name=name, scratch=scratch, model_type=family.model_type,
                             task_probe=report.get("task"))
    base = f"[{hub_id}](https://huggingface.co/{hub_id})" if hub_id else f"`{base_model}`"
    task = ("masked-language modelling only" if objective == "mlm" else
            f"masked-language modelling and {'next-sentence' if objective == 'nsp' else 'sentence-order'} prediction")
    precision = {"bf16": "bf16 mixed precision", "fp16": "fp16 mixed precision"}.get(training.get("precision"), "fp32")
    location = hub_model_id or output_dir
    lines = [
        "---", metadata.to_yaml(), "---", "",
        f"# {name.rsplit('/', 1)[-1]}: {family.name} {'pre-trained' if scratch else 'further pre-trained'} on "
        f"{corpus_name}",
        "",
        (f"{a_family} of `{recipe.get('config_name')}`'s architecture pre-trained from scratch, with "
         f"a new WordPiece tokenizer, on {corpus_name} with {task}." if scratch else
         f"{a_family} ({base}) further pre-trained on {corpus_name} with {task}."),
        "",
        "## Corpus",
        "",
        f"{train.get('documents', 0):,} documents, {train.get('sentences', 0):,} sentences, "
        f"{train.get('tokens', 0):,} tokens in training; {corpus.get('validation', {}).get('documents', 0):,} "
        f"documents held out for evaluation (language: {recipe.get('language', 'en')}).",
        "",
        "## Training",
        "",
        f"- objective: {objective}, pairing: {recipe.get('pairing')}, max_seq_length: {recipe.get('max_seq_length')}",
        f"- masking: mlm_probability {recipe.get('mlm_probability')}, [MASK]/random/kept "
        f"{recipe.get('mask_replace_prob')}/{recipe.get('random_replace_prob')}/"
        f"{1 - recipe.get('mask_replace_prob', 0.8) - recipe.get('random_replace_prob', 0.1):.2g}, "
        f"whole_word_mask {recipe.get('whole_word_mask')}, mask_count {recipe.get('mask_count')}",
        f"- {training.get('steps', 0):,} optimizer steps, {training.get('epochs', 0):g} epochs, effective batch "
        f"{training.get('effective_batch_size')} ({recipe.get('per_device_train_batch_size')} per device x "
        f"{recipe.get('gradient_accumulation_steps')} accumulation x {training.get('processes', 1)} "
        f"process{'es' if training.get('processes', 1) > 1 else ''})",
        f"- learning_rate {recipe.get('learning_rate')}"
        + (f" (new heads: head_learning_rate {training['head_learning_rate']:g})"
           if training.get("head_learning_rate") else "")
        + (f", {objective.upper()} head with AdamW moments of its own" if objective != "mlm"
           and training.get("head_moments") == "separate" else "") + ", "
        f"{str(recipe.get('lr_scheduler_type')).rsplit('.', 1)[-1].lower()} schedule, seed {recipe.get('seed')}",
        f"- {precision}, on {training.get('hardware', 'unknown hardware')}, "
        f"{report['timings'].get('train_seconds', 0):.0f} s of training",
        "",
        "## Held-out metrics",
        "",
        "```",
        metrics_tables({"before": report["before"], "after": report["after"]}),
        "```",
    ]
    if vocabulary:
        lines += ["", "## Vocabulary", "", "On the training documents:", "", "```", *vocabulary_lines(vocabulary), "```"]
    if report.get("task"):
        lines += ["", "## Your task", "", "The start model (baseline) and this one (adapted), fine-tuned the same way on "
                  "the task:", "", "```", format_task(report["task"]), "```"]
    if report["probes"]:
        lines += ["", "## Probes (top-5 fill-mask predictions)", "", "```", *probe_lines(report["probes"]), "```"]
    lines += ["", "## Use", "", "```python", f"from transformers import {model_class}, AutoTokenizer",
              f'model = {model_class}.from_pretrained("{location}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{location}")', "```", ""]
    with open(os.path.join(save_directory or output_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))
