"""Two checkpoints + the user's task -> the task metric of each (accuracy, macro-F1), mean and spread over seeds.

    bert-pretrain probe --task_file tickets.csv --model_name_or_path outputs/run --baseline_model BASE

Each model is fine-tuned the same way (same split, seeds and budget), so the difference is the checkpoint's:
- quick: a frozen-encoder linear probe. The encoder embeds each text once (mean of its last hidden states); a
  logistic regression is trained on those features per seed. Seconds on a CPU.
- full: short fine-tuning of the whole model with a new classification head, per seed.

The training loops are short and written here rather than through Trainer: a few epochs over a few hundred
examples, where Trainer's checkpointing, logging and output_dir would only add files and time. The `evaluate`
library's accuracy and F1 are scripts fetched from the Hub at run time (`evaluate.load("accuracy")` fails with
HF_HUB_OFFLINE=1 unless they were downloaded before, and they need scikit-learn); both metrics are a few lines
of numpy here instead.
"""

import dataclasses
import statistics
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.errors import UsageError, first_line
from pipeline.model import load_tokenizer, resolve_model_path
from pipeline.task import TaskData, TaskSplit

MODES = ("quick", "full")
METRICS = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))


@dataclasses.dataclass
class Budget:
    """How each model is trained on the task: the same for both, so only the checkpoint differs."""

    mode: str = "quick"
    seeds: int = 3
    epochs: int | None = None  # default: 50 (quick), 3 (full)
    learning_rate: float | None = None  # default: 1e-2 (quick), 5e-5 (full)
    batch_size: int = 16
    max_seq_length: int = 128

    def __post_init__(self):
        if self.mode not in MODES:
            raise UsageError(f"task_mode is '{self.mode}'; give quick (a linear probe) or full (fine-tuning).")
        if self.seeds < 1:
            raise UsageError(f"task_seeds is {self.seeds}; give 1 or more.")
        self.epochs = self.epochs or (50 if self.mode == "quick" else 3)
        self.learning_rate = self.learning_rate or (1e-2 if self.mode == "quick" else 5e-5)


def classification_metrics(predictions, references, num_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (the unweighted mean of each class's F1, a class never predicted nor present left
    out, as scikit-learn's f1_score(average="macro") with labels present)."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    f1s = []
    for label in range(num_labels):
        tp = np.sum((predictions == label) & (references == label))
        predicted, actual = np.sum(predictions == label), np.sum(references == label)
        if predicted + actual:
            f1s.append(2 * tp / (predicted + actual))
    return {"accuracy": float(np.mean(predictions == references)), "macro_f1": float(np.mean(f1s))}


def summarize(runs: list[dict[str, float]]) -> dict[str, dict]:
    """Per metric: the mean, the spread (sample standard deviation; 0 for one seed) and each seed's value."""
    return {key: {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                  "values": values}
            for key in runs[0] for values in [[run[key] for run in runs]]}


def encode(tokenizer, split: TaskSplit, max_seq_length: int) -> dict:
    return tokenizer(split.texts, split.text_pairs, truncation=True, max_length=max_seq_length)


def batches(encoded: dict, order, batch_size: int, tokenizer, device):
    """Padded batches of the encoded examples, in `order`."""
    for start in range(0, len(order), batch_size):
        rows = [{k: v[i] for k, v in encoded.items()} for i in order[start:start + batch_size]]
        yield {k: v.to(device) for k, v in tokenizer.pad(rows, return_tensors="pt").items()}


def load_encoder(path: str, num_labels: int | None = None):
    """The checkpoint's encoder (num_labels None) or the encoder with a new classification head."""
    from transformers import AutoModel, AutoModelForSequenceClassification
    from transformers.utils import logging

    # The pre-training heads left out and the new classifier are expected: their load report would only be noise
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        if num_labels is None:
            return AutoModel.from_pretrained(path)
        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    except (OSError, ValueError) as e:
        raise UsageError(f"the model {path} could not be loaded for the task ({first_line(e)}); give a model "
                         "folder or Hub id.") from None
    finally:
        logging.set_verbosity(verbosity)


@torch.no_grad()
def embed(model, tokenizer, encoded: dict, device) -> torch.Tensor:
    """Mean of the last hidden states over each example's tokens: features for the linear probe."""
    model.eval()
    # Longest first, so each batch pads to lengths alike (a CPU spends its time on padding otherwise)
    order = sorted(range(len(encoded["input_ids"])), key=lambda i: -len(encoded["input_ids"][i]))
    out = []
    for batch in batches(encoded, order, 32, tokenizer, device):
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(((hidden * mask).sum(1) / mask.sum(1)).float().cpu())
    features = torch.empty(len(order), out[0].shape[1])
    features[order] = torch.cat(out)
    return features


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


def fine_tune(path: str, tokenizer, task: TaskData, budget: Budget, seed: int, device) -> list[int]:
    """The whole model with a new head trained for budget.epochs (linear decay), seeded; test predictions."""
    torch.manual_seed(seed)  # the new head's initialisation
    model = load_encoder(path, len(task.label_names)).to(device)
    train, test = encode(tokenizer, task.train, budget.max_seq_length), encode(tokenizer, task.test,
                                                                                budget.max_seq_length)
    generator = torch.Generator().manual_seed(seed)
    steps = budget.epochs * -(-len(task.train.labels) // budget.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    labels = torch.tensor(task.train.labels)
    model.train()
    for _ in range(budget.epochs):
        order = torch.randperm(len(labels), generator=generator).tolist()
        for start, batch in zip(range(0, len(order), budget.batch_size),
                                batches(train, order, budget.batch_size, tokenizer, device)):
            target = labels[order[start:start + budget.batch_size]].to(device)
            loss = model(**batch, labels=target).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    predictions = []
    with torch.no_grad():
        for batch in batches(test, range(len(task.test.labels)), 64, tokenizer, device):
            predictions += model(**batch).logits.argmax(-1).tolist()
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
        {"task", "mode", "seeds", "budget", "labels", "examples", "models": {name: {"model", "seconds",
        "accuracy": {"mean", "std", "values"}, "macro_f1": ...}}}, for report.json.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    seeds = [seed + i for i in range(budget.seeds)]
    results = {}
    bar = tqdm(total=len(models) * len(seeds), desc=f"task probe ({budget.mode})", disable=not progress)
    for name, checkpoint in models.items():
        started = time.perf_counter()
        path = resolve_model_path(checkpoint)
        tokenizer = load_tokenizer(checkpoint)
        if budget.mode == "quick":
            encoder = load_encoder(path).to(device)
            train_x = embed(encoder, tokenizer, encode(tokenizer, task.train, budget.max_seq_length), device)
            test_x = embed(encoder, tokenizer, encode(tokenizer, task.test, budget.max_seq_length), device)
            del encoder
        runs = []
        for s in seeds:
            predictions = (linear_probe(train_x, task.train.labels, test_x, len(task.label_names), budget, s)
                           if budget.mode == "quick" else fine_tune(path, tokenizer, task, budget, s, device))
            runs.append(classification_metrics(predictions, task.test.labels, len(task.label_names)))
            bar.update()
        results[name] = {"model": checkpoint, "seconds": time.perf_counter() - started, **summarize(runs)}
    bar.close()
    return {"task": task.name, "mode": budget.mode, "seeds": seeds, "budget": dataclasses.asdict(budget),
            "labels": task.label_names,
            "examples": {"train": len(task.train.labels), "test": len(task.test.labels)}, "models": results}


def format_task(result: dict) -> str:
    """The probe's table: each model's metrics as mean ± spread over the seeds, and its wall time."""
    names = list(result["models"])
    lines = [f"Task probe: {result['task']} ({result['mode']}: "
             f"{'frozen encoder, linear probe' if result['mode'] == 'quick' else 'fine-tuning'}; "
             f"{len(result['seeds'])} seeds; {result['examples']['train']} train / {result['examples']['test']} test)",
             f"{'':<12}" + "".join(f"{name:>20}" for name in names)]
    for key, label in METRICS:
        cells = [f"{result['models'][n][key]['mean']:.1%} ± {result['models'][n][key]['std']:.1%}" for n in names]
        lines.append(f"{label:<12}" + "".join(f"{cell:>20}" for cell in cells))
    lines.append(f"{'seconds':<12}" + "".join(f"{result['models'][n]['seconds']:>20.1f}" for n in names))
    return "\n".join(lines)
