import pytest

from benchmarks.bench import format_time, time_to, times_sooner

MARKS = [{"step": 0, "train_seconds": 0.0, "eval_mlm_loss": 9.0},
         {"step": 5, "train_seconds": 10.0, "eval_mlm_loss": 4.0},
         {"step": 10, "train_seconds": 20.0, "eval_mlm_loss": 3.0}]


def test_time_to_a_level_is_the_first_evaluation_at_or_below_it():
    assert time_to(4.0, MARKS) == (10.0, 5)
    assert time_to(3.5, MARKS) == (20.0, 10)
    assert time_to(2.0, MARKS) == (20.0, None)  # never reached: the time it had
    assert [format_time(*time_to(level, MARKS)) for level in (4.0, 2.0)] == ["10 s (step 5)", "> 20 s"]


def test_times_sooner_is_a_bound_where_a_system_never_reached_the_level():
    assert times_sooner((60.0, 30), (20.0, 10)) == "3.0x"
    assert times_sooner((60.0, None), (20.0, 10)) == "> 3.0x"  # the other had not got there in 60 s
    assert times_sooner((60.0, 30), (120.0, None)) == "< 0.5x"
    assert times_sooner((60.0, None), (120.0, None)) == "n/a"


def test_gpu_flops_count_what_each_system_computes():
    """Useful work is the same for both ways of training the same tokens; what the GPU computes is not."""
    from transformers import BertConfig

    from benchmarks.gpu import step_flops

    config = BertConfig()
    common = dict(config=config, samples=4, positions=4 * 128, real_tokens=400.0, masked_tokens=60.0)
    stock = step_flops(**common, decoder_positions=4 * 128, second_backward=False)
    sparse = step_flops(**common, decoder_positions=60.0, second_backward=False)
    twice = step_flops(**common, decoder_positions=60.0, second_backward=True)
    assert stock[0] == sparse[0] == twice[0] < sparse[1] < stock[1]
    assert twice[1] > sparse[1]


@pytest.mark.slow
def test_gpu_benchmark_skips_cleanly_without_a_gpu():
    import os
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the benchmark runs")
    script = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks", "gpu.py")
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "GPU benchmark skipped: no CUDA GPU on this machine."
