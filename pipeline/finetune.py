"""Two checkpoints + the user's task -> the task metric of each (accuracy, macro-F1), mean and spread over seeds.

    bert-pretrain probe --task_file tickets.csv --model_name_or_path outputs/run --baseline_model BASE

Each model is fine-tuned the same way (same split, seeds and budget), so the difference is the checkpoint's:
- quick: a frozen-encoder linear probe. The encoder embeds each text once (mean of its last hidden states); a
  logistic regression is trained on those features per seed. Seconds on a CPU.
- full: short fine-tuning of the whole model with a new classification head, per seed.

A token classification task (tags per word) goes the same two ways, a word at a time: a word's feature is its
first piece's hidden state, and fine-tuning trains a token classification head on first pieces.

The training loops are short and written here rather than through Trainer: a few epochs over a few hundred
examples, where Trainer's checkpointing, logging and output_dir would only add files and time. The metrics are
`pipeline.task_metrics`' (evaluate modules over scikit-learn and seqeval).
"""

import bisect
import dataclasses
import statistics
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.errors import UsageError, first_line
from pipeline.fast_paths import use_fast_paths
from pipeline.tokenizer import load_tokenizer, resolve_model_path
from pipeline.task import TaskData, TaskSplit
from pipeline.task_metrics import metric_names, task_metrics

MODES = ("quick", "full")
# Full mode trains at least this many steps by default (3 to 20 epochs): 3 epochs of 256 examples are 48 steps,
# after which a new token classifier still tags every word O (entity F1 0% on the Python docs' tags task; 74% after
# 160 steps, the same seed).
MIN_FULL_STEPS = 150


@dataclasses.dataclass
class Budget:
    """How each model is trained on the task: the same for both, so only the checkpoint differs."""

    mode: str = "quick"
    seeds: int = 3
    epochs: int | None = None  # default: 50 (quick); full: MIN_FULL_STEPS steps' worth, 3 to 20 (for_task)
    learning_rate: float | None = None  # default: 1e-2 (quick), 5e-5 (full)
    batch_size: int = 16
    max_seq_length: int = 128

    def __post_init__(self):
        if self.mode not in MODES:
            raise UsageError(f"task_mode is '{self.mode}'; give quick (a linear probe) or full (fine-tuning).")
        if self.seeds < 1:
            raise UsageError(f"task_seeds is {self.seeds}; give 1 or more.")
        self.learning_rate = self.learning_rate or (1e-2 if self.mode == "quick" else 5e-5)
        if self.mode == "quick":
            self.epochs = self.epochs or 50

    def for_task(self, train_examples: int) -> "Budget":
        """The budget with its epochs resolved for a training part of this size."""
        if self.epochs:
            return self
        steps_per_epoch = -(-train_examples // self.batch_size)
        return dataclasses.replace(self, epochs=max(3, min(20, -(-MIN_FULL_STEPS // steps_per_epoch))))


def summarize(runs: list[dict[str, float]]) -> dict[str, dict]:
    """Per metric: the mean, the spread (sample standard deviation; 0 for one seed) and each seed's value."""
    return {key: {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                  "values": values}
            for key in runs[0] for values in [[run[key] for run in runs]]}


def encode(tokenizer, split: TaskSplit, max_seq_length: int, kind: str = "classification") -> dict:
    """The split as model inputs; for token classification also `first_pieces`: each word's first token
    position (None for a word cut off by max_seq_length)."""
    if kind != "tokens":
        return dict(tokenizer(split.texts, split.text_pairs, truncation=True, max_length=max_seq_length))
    # Words joined by spaces and mapped back by character offsets: works for every fast tokenizer (a byte-level
    # BPE one refuses is_split_into_words unless it was loaded with add_prefix_space)
    texts, spans = [], []
    for words in split.texts:
        starts = [0]
        for word in words[:-1]:
            starts.append(starts[-1] + len(word) + 1)
        texts.append(" ".join(words))
        spans.append(starts)
    encoded = dict(tokenizer(texts, truncation=True, max_length=max_seq_length, return_offsets_mapping=True))
    encoded["first_pieces"] = []
    for starts, offsets in zip(spans, encoded.pop("offset_mapping")):
        first = [None] * len(starts)
        for position, (begin, end) in enumerate(offsets):
            if end > begin:  # special tokens have empty spans
                word = bisect.bisect_right(starts, end - 1) - 1
                if first[word] is None:
                    first[word] = position
        encoded["first_pieces"].append(first)
    return encoded


def batches(encoded: dict, order, batch_size: int, tokenizer, device):
    """Padded batches of the encoded examples, in `order`; per-token labels padded with -100 (ignored)."""
    for start in range(0, len(order), batch_size):
        ids = order[start:start + batch_size]
        batch = tokenizer.pad([{k: encoded[k][i] for k in encoded if k not in ("first_pieces", "labels")}
                               for i in ids], return_tensors="pt")
        if "labels" in encoded:
            labels = [encoded["labels"][i] for i in ids]
            if isinstance(labels[0], list):
                width = batch["input_ids"].shape[1]
                labels = [(row + [-100] * (width - len(row))) if tokenizer.padding_side == "right" else
                          ([-100] * (width - len(row)) + row) for row in labels]
            batch["labels"] = torch.tensor(labels)
        yield {k: v.to(device) for k, v in batch.items()}


def load_encoder(path: str, num_labels: int | None = None, kind: str = "classification"):
    """The checkpoint's encoder (num_labels None) or the encoder with a new sequence (or token) classification
    head."""
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification
    from transformers.utils import logging

    # The pre-training heads left out and the new classifier are expected: their load report would only be noise,
    # and a bar per load (two models x seeds) would scroll the probe's own bar away
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        if num_labels is None:
            return AutoModel.from_pretrained(path)
        head = AutoModelForTokenClassification if kind == "tokens" else AutoModelForSequenceClassification
        return head.from_pretrained(path, num_labels=num_labels)
    except (OSError, ValueError) as e:
        raise UsageError(f"the model {path} could not be loaded for the task ({first_line(e)}); give a model "
                         "folder or Hub id.") from None
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


@torch.no_grad()
def embed(model, tokenizer, encoded: dict, device) -> torch.Tensor | list[torch.Tensor]:
    """Features for the linear probe: each example's mean last hidden state ([examples, hidden]); for token
    classification, a [kept words, hidden] tensor per example, each word's first piece's hidden state."""
    model.eval()
    firsts = encoded.get("first_pieces")
    # Longest first, so each batch pads to lengths alike (a CPU spends its time on padding otherwise)
    order = sorted(range(len(encoded["input_ids"])), key=lambda i: -len(encoded["input_ids"][i]))
    features = [None] * len(order)
    for start, batch in zip(range(0, len(order), 32), batches(encoded, order, 32, tokenizer, device)):
        hidden = model(**batch).last_hidden_state.float()
        if firsts is None:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = ((hidden * mask).sum(1) / mask.sum(1)).cpu()
        for row, i in enumerate(order[start:start + 32]):
            features[i] = (pooled[row] if firsts is None else
                           hidden[row, [p for p in firsts[i] if p is not None]].cpu())
    return torch.stack(features) if firsts is None else features


def linear_probe(train_x, train_y, test_x, num_labels: int, budget: Budget, seed: int) -> list[int]:
    """A logistic regression on standardized features, minibatch AdamW from a seeded start; test predictions."""
    generator = torch.Generator().manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    head = torch.nn.Linear(train_x.shape[1], num_labels)
    with torch.no_grad():
        torch.nn.init.normal_(head.weight, std=0.01, generator=generator)
        head.bias.zero_()
    optimizer = torch.optim.AdamW(head.parameters(), lr=budget.learning_rate, weight_decay=1e-2)
    labels = torch.tensor(train_y)
    for _ in range(budget.epochs):
        for idx in torch.randperm(len(labels), generator=generator).split(budget.batch_size):
            loss = torch.nn.functional.cross_entropy(head(train_x[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return head(test_x).argmax(-1).tolist()


def kept(values: list, firsts: list) -> list:
    """The values of the words that kept a token (not cut off by max_seq_length)."""
    return [v for v, p in zip(values, firsts) if p is not None]


def word_predictions(predicted: list[int], firsts: list) -> list[int]:
    """A tag id per word from the predictions of the kept words, in order; a word cut off is tagged O (id 0)."""
    it = iter(predicted)
    return [next(it) if p is not None else 0 for p in firsts]


def probe_words(train_features, test_features, task: TaskData, train_firsts, test_firsts, budget: Budget,
                seed: int) -> list[list[int]]:
    """The linear probe a word at a time; a list of tag ids per test sentence."""
    train_y = [tag for tags, firsts in zip(task.train.labels, train_firsts) for tag in kept(tags, firsts)]
    # Batches of the words of batch_size sentences: as many steps as a sentence task of that size takes
    words_per_sentence = max(1, len(train_y) // len(task.train.labels))
    budget = dataclasses.replace(budget, batch_size=budget.batch_size * words_per_sentence)
    predicted = linear_probe(torch.cat(train_features), train_y, torch.cat(test_features), len(task.label_names),
                             budget, seed)
    sentences, at = [], 0
    for features, firsts in zip(test_features, test_firsts):
        sentences.append(word_predictions(predicted[at:at + len(features)], firsts))
        at += len(features)
    return sentences


def fine_tune(path: str, tokenizer, task: TaskData, budget: Budget, seed: int, device) -> list:
    """The whole model with a new head trained for budget.epochs (linear decay), seeded; test predictions (a label
    id per example, or a tag id per word)."""
    torch.manual_seed(seed)  # the new head's initialisation
    model = load_encoder(path, len(task.label_names), task.kind).to(device)
    # The paths pre-training runs on (pipeline.fast_paths): the same model, faster
    use_fast_paths(model, device)
    train, test = (encode(tokenizer, split, budget.max_seq_length, task.kind) for split in (task.train, task.test))
    if task.kind == "tokens":  # each word's tag on its first piece; other pieces and special tokens are ignored
        train["labels"] = []
        for ids, tags, firsts in zip(train["input_ids"], task.train.labels, train["first_pieces"]):
            labels = [-100] * len(ids)
            for tag, position in zip(tags, firsts):
                if position is not None:
                    labels[position] = tag
            train["labels"].append(labels)
    else:
        train["labels"] = task.train.labels
    generator = torch.Generator().manual_seed(seed)
    steps = budget.epochs * -(-len(task.train.labels) // budget.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    model.train()
    for _ in range(budget.epochs):
        order = torch.randperm(len(task.train.labels), generator=generator).tolist()
        for batch in batches(train, order, budget.batch_size, tokenizer, device):
            loss = model(**batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    predictions, order = [], list(range(len(task.test.labels)))
    with torch.no_grad():
        for start, batch in zip(range(0, len(order), 64), batches(test, order, 64, tokenizer, device)):
            best = model(**batch).logits.argmax(-1).tolist()
            if task.kind != "tokens":
                predictions += best
                continue
            for row, i in enumerate(order[start:start + 64]):
                firsts = test["first_pieces"][i]
                predictions.append(word_predictions([best[row][p] for p in firsts if p is not None], firsts))
    return predictions


def probe_task(task: TaskData, models: dict[str, str], budget: Budget, seed: int = 42,
               progress: bool = True) -> dict:
    """Each named checkpoint fine-tuned on the task as `budget` says, seeds seed, seed+1, ...

    Args:
        task: the user's task, split.
        models: name -> checkpoint (a folder, a Hub id or package:PKG/SUBDIR), e.g. {"baseline": ..., "adapted": ...}.
        budget: the mode, seeds and training budget, the same for every model.
        seed: the first seed.
        progress: show a progress bar.

    Returns:
        {"task", "kind", "metrics", "mode", "seeds", "budget", "labels", "examples", "models": {name: {"model",
        "seconds", "accuracy": {"mean", "std", "values"}, "macro_f1" (or "entity_f1", ...): ...}}}, for report.json.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    budget = budget.for_task(len(task.train.labels))
    seeds = [seed + i for i in range(budget.seeds)]
    results = {}
    bar = tqdm(total=len(models) * len(seeds), desc=f"task probe ({budget.mode})", disable=not progress)
    for name, checkpoint in models.items():
        started = time.perf_counter()
        path = resolve_model_path(checkpoint)
        tokenizer = load_tokenizer(checkpoint)
        if budget.mode == "quick":
            encoder = load_encoder(path).to(device)
            train, test = (encode(tokenizer, split, budget.max_seq_length, task.kind)
                           for split in (task.train, task.test))
            train_x, test_x = embed(encoder, tokenizer, train, device), embed(encoder, tokenizer, test, device)
            del encoder
        runs = []
        for s in seeds:
            if budget.mode == "full":
                predictions = fine_tune(path, tokenizer, task, budget, s, device)
            elif task.kind == "tokens":
                predictions = probe_words(train_x, test_x, task, train["first_pieces"], test["first_pieces"],
                                          budget, s)
            else:
                predictions = linear_probe(train_x, task.train.labels, test_x, len(task.label_names), budget, s)
            runs.append(task_metrics(task.kind, predictions, task.test.labels, task.label_names))
            bar.update()
        results[name] = {"model": checkpoint, "seconds": time.perf_counter() - started, **summarize(runs)}
    bar.close()
    return {"task": task.name, "kind": task.kind, "metrics": [list(m) for m in metric_names(task.kind)],
            "mode": budget.mode, "seeds": seeds, "budget": dataclasses.asdict(budget), "labels": task.label_names,
            "examples": {"train": len(task.train.labels), "test": len(task.test.labels)}, "models": results}


def format_task(result: dict) -> str:
    """The probe's table: each model's metrics as mean ± spread over the seeds, and its wall time."""
    names = list(result["models"])
    unit = "sentences" if result.get("kind") == "tokens" else "examples"
    lines = [f"Task probe: {result['task']} ({result['mode']}: "
             f"{'frozen encoder, linear probe' if result['mode'] == 'quick' else 'fine-tuning'}; "
             f"{len(result['seeds'])} seeds; {result['examples']['train']} train / {result['examples']['test']} test "
             f"{unit})",
             f"{'':<14}" + "".join(f"{name:>20}" for name in names)]
    for key, label in result["metrics"]:
        cells = [f"{result['models'][n][key]['mean']:.1%} ± {result['models'][n][key]['std']:.1%}" for n in names]
        lines.append(f"{label:<14}" + "".join(f"{cell:>20}" for cell in cells))
    lines.append(f"{'seconds':<14}" + "".join(f"{result['models'][n]['seconds']:>20.1f}" for n in names))
    return "\n".join(lines)
