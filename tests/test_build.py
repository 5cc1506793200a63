"""pipeline/build.py: the decisions the composition layer makes from the arguments and the launch."""

from transformers import TrainingArguments

from pipeline.build import head_moments


def test_separate_head_moments_fall_back_where_the_gradient_is_not_whole(tmp_path):
    def args(**kwargs):
        return TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **kwargs)

    assert head_moments("separate", args(), environ={}) == ("separate", None)
    assert head_moments("separate", args(optim="adamw_torch"), environ={}) == ("separate", None)
    assert head_moments("shared", args(), environ={}) == ("shared", None)
    assert head_moments("separate", args(), environ={"ACCELERATE_USE_FSDP": "true"}) == \
        ("shared", "FSDP shards the gradients")
    assert head_moments("separate", args(), environ={"ACCELERATE_USE_DEEPSPEED": "true"}) == \
        ("shared", "DeepSpeed owns the optimizer")
    assert head_moments("separate", args(optim="adafactor"), environ={}) == \
        ("shared", "optim adafactor is not AdamW")

