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
