"""kill -9 in the middle of training or of `prepare`: the next run ends as an unbroken one would; SIGTERM and
Ctrl-C stop a run honestly (a checkpoint, nothing final, one line, a non-zero exit)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from pipeline.__main__ import main
from pipeline.cache import CACHE_NAME
from tests.conftest import make_documents


def command(model_dir, corpus, out, *extra):
    return [sys.executable, "-m", "pipeline", "train", "--model_name_or_path", model_dir, "--train_file", corpus,
            "--output_dir", out, "--max_seq_length", "48", "--per_device_train_batch_size", "8", "--max_steps", "40",
            "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1", "--report_to", "none",
            "--disable_tqdm", "true", "--learning_rate", "1.0e-3", "--seed", "7", *extra]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tiny_model_dir, tmp_path, root, subprocess_env):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_documents(80, seed=5)) + "\n")
    env = subprocess_env
    whole, broken = str(tmp_path / "whole"), str(tmp_path / "broken")
    subprocess.run(command(tiny_model_dir, str(corpus), whole), check=True, capture_output=True, env=env, cwd=root)

    # 40 steps with a checkpoint every 2: the kill lands mid-run, soon after checkpoint-4 is complete.
    proc = subprocess.Popen(command(tiny_model_dir, str(corpus), broken), env=env, cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = os.path.join(broken, "checkpoint-4", "trainer_state.json")
    deadline = time.time() + 300
    while not os.path.exists(state) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(broken, "model.safetensors")), "the run finished before the kill"

    result = subprocess.run(command(tiny_model_dir, str(corpus), broken, "--resume_from_checkpoint", "latest"),
                            capture_output=True, text=True, env=env, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming from" in result.stdout and "checkpoint-" in result.stdout
    # The same final loss (the last logged training loss and the held-out evaluation) and the same weights.
    ends = [json.load(open(os.path.join(out, "report.json"))) for out in (whole, broken)]
    last = [[h for h in r["log_history"] if "loss" in h][-1] for r in ends]
    assert last[0]["step"] == last[1]["step"] == 40
    assert abs(last[0]["loss"] - last[1]["loss"]) < 1e-4, last
    assert abs(ends[0]["after"]["eval_loss"] - ends[1]["after"]["eval_loss"]) < 1e-4
    a, b = load_file(os.path.join(whole, "model.safetensors")), load_file(os.path.join(broken, "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


@pytest.mark.slow
def test_killed_prepare_leaves_a_cache_the_next_run_can_trust(tiny_model_dir, tmp_path, root, subprocess_env):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_documents(3000, seed=6)) + "\n")
    prepare = [sys.executable, "-m", "pipeline", "prepare", "--model_name_or_path", tiny_model_dir, "--train_file",
               str(corpus), "--max_seq_length", "48", "--dupe_factor", "4", "--output_dir", str(tmp_path / "out")]

    def env(name):  # a datasets cache of its own for the clean and the killed runs
        return {**subprocess_env, "HF_DATASETS_CACHE": str(tmp_path / name)}

    def stats(stdout):  # the statistics, less the last line (where the dataset is and how long it took)
        return stdout.strip().splitlines()[:-1]

    clean = subprocess.run(prepare, capture_output=True, text=True, env=env("clean"), cwd=root, check=True).stdout

    cache = tmp_path / "killed" / CACHE_NAME
    proc = subprocess.Popen(prepare, env=env("killed"), cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (cache.is_dir() and any(p.name.startswith(".dataset-") for p in cache.iterdir())) \
            and time.time() < deadline:
        time.sleep(0.01)  # until its scratch folder appears: it is mid-way
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not any(p.name.startswith("dataset-") for p in cache.iterdir()), "prepare finished before the kill"

    again = subprocess.run(prepare, capture_output=True, text=True, env=env("killed"), cwd=root)
    assert again.returncode == 0, again.stderr[-2000:]
    assert stats(again.stdout) == stats(clean) and "(built in " in again.stdout  # as an uninterrupted run
    built = sorted(p.name for p in cache.iterdir())  # the killed run's scratch is gone
    assert len(built) == 1 and built[0].startswith("dataset-")
    from datasets import load_from_disk

    killed, clean = (load_from_disk(str(tmp_path / name / CACHE_NAME / built[0]))["train"][:]
                     for name in ("killed", "clean"))
    assert killed == clean


def start_long_run(model_dir, corpus, out, env, root):
    """A run far longer than the test, checkpointing every 2 steps; returns once it is training (checkpoint-2 is
    whole), so a signal lands in the training loop whatever the machine's speed."""
    cmd = command(model_dir, corpus, out)
    cmd[cmd.index("--max_steps") + 1] = "2000"
    proc = subprocess.Popen([*cmd, "--save_total_limit", "2"], env=env, cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    state = os.path.join(out, "checkpoint-2", "trainer_state.json")
    deadline = time.time() + 300
    while not os.path.exists(state) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    return proc


def our_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("bert-pretrain")]


FINAL = {"model.safetensors", "config.json", "report.json", "report.png", "README.md", "tokenizer.json"}


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_writes_nothing_final_and_the_requeued_job_goes_on(tiny_model_dir, tmp_path,
                                                                                    root, subprocess_env, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_documents(80, seed=5)) + "\n")
    out = str(tmp_path / "out")
    proc = start_long_run(tiny_model_dir, str(corpus), out, subprocess_env, root)
    proc.send_signal(signal.SIGTERM)  # a preempted job: Trainer's just-in-time checkpoint, then a stop
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    lines = our_lines(stderr)
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    step = int(re.search(r"training stopped at step (\d+) of 2000 \(SIGTERM\), so no final model, report or card "
                         r"was written; the newest checkpoint is .*checkpoint-(\d+): continue with "
                         r"--resume_from_checkpoint latest\.$", lines[0]).group(2))
    assert not FINAL & set(os.listdir(out)) and not {".lock", ".final-tmp"} & set(os.listdir(out))
    assert json.load(open(os.path.join(out, f"checkpoint-{step}", "trainer_state.json")))["global_step"] == step

    # The requeued job (shortened here, and run in this process) resumes where it stopped and finishes.
    again = command(tiny_model_dir, str(corpus), out, "--resume_from_checkpoint", "latest")
    again[again.index("--max_steps") + 1] = str(step + 2)
    assert main(again[again.index("train"):]) == 0
    assert f"resuming from {out}/checkpoint-{step}\n" in capsys.readouterr().out
    assert FINAL <= set(os.listdir(out))
    assert json.load(open(os.path.join(out, "report.json")))["training"]["steps"] == step + 2


@pytest.mark.slow
def test_ctrl_c_is_one_line_saying_what_was_saved_exit_130(tiny_model_dir, tmp_path, root, subprocess_env):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_documents(80, seed=5)) + "\n")
    out = str(tmp_path / "out")
    proc = start_long_run(tiny_model_dir, str(corpus), out, subprocess_env, root)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-3000:]
    lines = our_lines(stderr)
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert re.fullmatch(r"bert-pretrain train: interrupted \(Ctrl-C\); the newest checkpoint is .*checkpoint-\d+: "
                        r"continue with --resume_from_checkpoint latest\.", lines[0]), lines[0]
    assert not FINAL & set(os.listdir(out)) and ".lock" not in os.listdir(out)
