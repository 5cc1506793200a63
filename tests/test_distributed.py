"""Two processes on CPU (gloo) through torchrun: the real multi-process path users take on GPUs."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import make_documents

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_two_processes_share_pairs_split_batches_and_save_once(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_documents(80, seed=3)) + "\n")
    out = tmp_path / "run"
    with socket.socket() as probe:  # a free port, so parallel or leftover runs cannot collide
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           os.path.join(ROOT, "tests", "ddp_worker.py"), "--model_name_or_path", tiny_model_dir,
           "--train_file", str(corpus), "--output_dir", str(out), "--max_seq_length", "48",
           "--per_device_train_batch_size", "4", "--max_steps", "6", "--logging_steps", "2",
           "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--learning_rate", "1.0e-3"]
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.load(open(out / f"rank{r}.json")) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]

    # Both ranks built (rank 0) or loaded (rank 1) the identical prepared dataset.
    assert ranks[0]["train_hash"] == ranks[1]["train_hash"]
    # Each rank trained on its own shard: 6 steps x 4 examples each (plus the one batch accelerate's
    # dataloader fetches ahead), no example on both.
    seen0, seen1 = ranks[0]["seen"], ranks[1]["seen"]
    assert 24 <= len(seen0) <= 28 and 24 <= len(seen1) <= 28
    assert not set(seen0) & set(seen1) and set(seen0 + seen1) <= set(ranks[0]["all_train"])
    # Exactly one final model, written once.
    weights = [f for f in os.listdir(out) if f.endswith(".safetensors")]
    assert weights == ["model.safetensors"] and (out / "config.json").is_file() and (out / "report.json").is_file()
    # Logged per-head metrics are the means over both ranks, not rank 0's own.
    logged = [h for h in ranks[0]["log_history"] if "mlm_loss" in h]
    assert [h["step"] for h in logged] == [2, 4, 6]
    for entry, s0, s1 in zip(logged, ranks[0]["local_sums"], ranks[1]["local_sums"]):
        total = [a + b for a, b in zip(s0["sums"], s1["sums"])]
        assert entry["mlm_loss"] == pytest.approx(total[0] / total[1], abs=1e-4)
        assert entry["nsp_accuracy"] == pytest.approx(total[5] / total[4], abs=1e-4)
        assert s0["sums"][1] != total[1]  # rank 0 alone counted fewer masked tokens
