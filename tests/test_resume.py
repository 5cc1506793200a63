"""kill -9 in the middle of training, then --resume_from_checkpoint latest: same end as an unbroken run."""

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
    a, b = load_file(os.path.join(whole, "model.safetensors")), load_file(os.path.join(broken, "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
