"""kill -9 in the middle of training or of `prepare`: the next run ends as an unbroken one would."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import make_documents

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(model_dir, corpus, out, *extra):
    return [sys.executable, "-m", "pipeline", "train", "--model_name_or_path", model_dir, "--train_file", corpus,
            "--output_dir", out, "--max_seq_length", "48", "--per_device_train_batch_size", "8", "--max_steps", "40",
            "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1", "--report_to", "none",
            "--disable_tqdm", "true", "--learning_rate", "1.0e-3", "--seed", "7", *extra]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_documents(80, seed=5)) + "\n")
    env = {**os.environ, "PYTHONPATH": ROOT}
    whole, broken = str(tmp_path / "whole"), str(tmp_path / "broken")
    subprocess.run(command(tiny_model_dir, str(corpus), whole), check=True, capture_output=True, env=env, cwd=ROOT)

    # 40 steps with a checkpoint every 2: the kill lands mid-run, soon after checkpoint-4 is complete.
    proc = subprocess.Popen(command(tiny_model_dir, str(corpus), broken), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = os.path.join(broken, "checkpoint-4", "trainer_state.json")
    deadline = time.time() + 300
    while not os.path.exists(state) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(broken, "model.safetensors")), "the run finished before the kill"

    result = subprocess.run(command(tiny_model_dir, str(corpus), broken, "--resume_from_checkpoint", "latest"),
                            capture_output=True, text=True, env=env, cwd=ROOT)
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
def test_killed_prepare_leaves_a_cache_the_next_run_can_trust(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_documents(3000, seed=6)) + "\n")
    env = {**os.environ, "PYTHONPATH": ROOT}
    prepare = [sys.executable, "-m", "pipeline", "prepare", "--model_name_or_path", tiny_model_dir, "--train_file",
               str(corpus), "--max_seq_length", "48", "--dupe_factor", "4"]
    clean = subprocess.run([*prepare, "--output_dir", str(tmp_path / "clean")], capture_output=True, text=True,
                           env=env, cwd=ROOT, check=True).stdout

    out = tmp_path / "killed"
    proc = subprocess.Popen([*prepare, "--output_dir", str(out)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (out.is_dir() and any(p.name.startswith(".dataset.") for p in out.iterdir())) and time.time() < deadline:
        time.sleep(0.01)  # until its scratch folder appears: it is mid-way
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "dataset").exists(), "prepare finished before the kill"

    again = subprocess.run([*prepare, "--output_dir", str(out)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout == clean  # the same statistics as an uninterrupted run
    assert sorted(p.name for p in out.iterdir()) == ["dataset"]  # the killed run's scratch is gone
    from datasets import load_from_disk

    killed, clean = (load_from_disk(str(tmp_path / name / "dataset"))["train"][:] for name in ("killed", "clean"))
    assert killed == clean
