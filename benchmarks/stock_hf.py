"""Corpus -> BertForPreTraining trained the stock Hugging Face way, kept faithful as a second baseline to beat.

The path a user assembles from the Hugging Face docs and course, and nothing more:

- pairs: the corpus read with `load_dataset("text")` (one paragraph a line), each paragraph split into
  sentences after `.`, `!` or `?`; every sentence that has a next one in its paragraph is sentence A, and B is
  that next sentence (next_sentence_label 0) or, half the time, a random sentence of the corpus (label 1),
  the 50/50 draw of the BERT paper and of the seed tutorial;
- the tokenizer on (A, B) with `truncation=True, padding="max_length"` at --max-length;
- `BertForPreTraining.from_pretrained` with its own forward: the MLM decoder over every position of every
  sequence, padding included, plus the NSP loss;
- `DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)`: it pads (nothing is left to pad), draws
  15% of the non-special tokens again for every batch (80/10/10), and passes token_type_ids and
  next_sentence_label through to the model;
- `Trainer` with default `TrainingArguments`: 3 epochs, AdamW at 5e-5, linear decay without warmup, seed 42,
  and its default precision (fp32 on a CPU and a GPU alike). Set: output_dir, the batch size, and
  include_num_input_tokens_seen="non_padding", Trainer's own count of real tokens (a scalar sum per step).
  `gpu.py` builds the same Trainer with `stock_trainer`, once as it is and once with `bf16=True`, the one flag a
  user adds for bf16, and counts real tokens from the padded pairs instead of at every step.

For a benchmark, one callback times training seconds (on_step_begin to on_step_end, as `bench.py`'s StepTimer
does for the pipeline: saving and data loading excluded), saves the model every --save-steps steps and at the
end so its held-out loss can be measured elsewhere, and stops training after --seconds training seconds.
Figures are printed as JSON on the last line, as the seed tutorial does.

    python benchmarks/stock_hf.py --corpus train.txt --model DIR --output-dir OUT --seconds 600
"""

import argparse
import json
import math
import os
import random
import re
import time

from datasets import Dataset, load_dataset
from transformers import (AutoTokenizer, BertForPreTraining, DataCollatorForLanguageModeling, Trainer,
                          TrainerCallback, TrainingArguments, set_seed)

# The sentence split a user writes without a segmenter package: after ., ! or ? and a space.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def make_pairs(paragraphs: list[str], *, nsp_probability: float, rng: random.Random) -> dict[str, list]:
    """Paragraphs -> {"sentence_a", "sentence_b", "next_sentence_label"}: each sentence with its successor
    (label 0) or, with nsp_probability, a random sentence of the corpus (label 1)."""
    sentences = [[s for s in _SENTENCE_END.split(p.strip()) if s] for p in paragraphs]
    bag = [s for paragraph in sentences for s in paragraph]
    pairs = {"sentence_a": [], "sentence_b": [], "next_sentence_label": []}
    for paragraph in sentences:
        for first, second in zip(paragraph, paragraph[1:]):
            random_b = rng.random() < nsp_probability
            pairs["sentence_a"].append(first)
            pairs["sentence_b"].append(rng.choice(bag) if random_b else second)
            pairs["next_sentence_label"].append(int(random_b))
    return pairs


class BudgetCallback(TrainerCallback):
    """Training seconds; the model saved every save_steps and at the end; training stopped after `seconds`."""

    def __init__(self, output_dir: str, tokenizer, save_steps: int, seconds: float):
        self.output_dir, self.tokenizer, self.save_steps, self.seconds = output_dir, tokenizer, save_steps, seconds
        self.train_seconds, self.checkpoints, self._start = 0.0, [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.train_seconds += time.perf_counter() - self._start
        if self.seconds and self.train_seconds >= self.seconds:
            control.should_training_stop = True
        last = control.should_training_stop or state.global_step >= state.max_steps
        if last or state.global_step % self.save_steps == 0:
            path = os.path.join(self.output_dir, f"step-{state.global_step}")
            model.save_pretrained(path)
            self.tokenizer.save_pretrained(path)  # so the checkpoint loads on its own for evaluation
            self.checkpoints.append({"step": state.global_step, "train_seconds": self.train_seconds, "path": path})


def stock_trainer(corpus: str, model_dir: str, output_dir: str, *, max_length: int, batch_size: int,
                  max_steps: int = -1, seed: int = 42, bf16: bool = False, count_tokens: bool = True,
                  callbacks: list | None = None, use_cpu: bool = False) -> Trainer:
    """The stock path's Trainer, ready to train: tokenizer, model, pairs, collator and default arguments.

    bf16 is the one flag a user adds for bf16 mixed precision on a GPU; count_tokens sets Trainer's own count of
    real tokens (a scalar copied to the host at every step: the CPU benchmark reads it, the GPU one counts the
    padding it knows instead); use_cpu only lets a smoke run try bf16 on a CPU.
    """
    set_seed(seed)  # before the model: its new heads are drawn from the global generator
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BertForPreTraining.from_pretrained(model_dir)

    # Load datasets
    paragraphs = load_dataset("text", data_files=corpus, split="train")["text"]
    pairs = Dataset.from_dict(make_pairs(paragraphs, nsp_probability=0.5, rng=random.Random(seed)))
    train_dataset = pairs.map(
        lambda batch: tokenizer(batch["sentence_a"], batch["sentence_b"], truncation=True, padding="max_length",
                                max_length=max_length),
        batched=True, remove_columns=["sentence_a", "sentence_b"])
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)

    # Train
    training_args = TrainingArguments(output_dir=output_dir, per_device_train_batch_size=batch_size,
                                      max_steps=max_steps, bf16=bf16, use_cpu=use_cpu,
                                      include_num_input_tokens_seen="non_padding" if count_tokens else "no")
    return Trainer(model=model, args=training_args, train_dataset=train_dataset, data_collator=collator,
                   processing_class=tokenizer, callbacks=callbacks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="text file, one paragraph a line")
    parser.add_argument("--model", required=True, help="local BERT folder (config, weights, vocab)")
    parser.add_argument("--output-dir", required=True, help="where checkpoints step-N/ are saved")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this many training seconds (0: no)")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: 3 epochs)")
    parser.add_argument("--save-steps", type=int, default=5, help="save the model every this many steps")
    parser.add_argument("--seed", type=int, default=42, help="TrainingArguments' default seed")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    budget = BudgetCallback(args.output_dir, None, args.save_steps, args.seconds)
    trainer = stock_trainer(args.corpus, args.model, args.output_dir, max_length=args.max_length,
                            batch_size=args.batch_size, max_steps=args.max_steps, seed=args.seed, callbacks=[budget])
    budget.tokenizer, train_dataset = trainer.processing_class, trainer.train_dataset
    prep_seconds = time.perf_counter() - t0
    trainer.train()
    # Every epoch's last batch may be short (Trainer keeps it): samples counted per epoch, not steps x batch.
    epochs, rest = divmod(trainer.state.global_step, math.ceil(len(train_dataset) / args.batch_size))
    samples = epochs * len(train_dataset) + min(rest * args.batch_size, len(train_dataset))
    print(json.dumps({
        "pairs": len(train_dataset), "steps": trainer.state.global_step, "prep_s": round(prep_seconds, 3),
        "train_s": round(budget.train_seconds, 3), "real_tokens": trainer.state.num_input_tokens_seen,
        "samples": samples,
        "precision": {"no": "fp32"}.get(trainer.accelerator.mixed_precision, trainer.accelerator.mixed_precision),
        "checkpoints": budget.checkpoints,
    }))


if __name__ == "__main__":
    main()
