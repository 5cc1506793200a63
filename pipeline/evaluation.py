"""Any checkpoint + the recipe's held-out data -> the same metrics table `train` prints.

    bert-pretrain evaluate --config recipes/quickstart.yaml --model_name_or_path outputs/quickstart
"""

from pipeline.arguments import parse_args
from pipeline.build import (Corpus, build_collator, build_dataset, build_eval_dataset, build_model, build_tokenizer,
                            build_trainer)
from pipeline.errors import UsageError
from pipeline.fast_paths import use_fast_paths
from pipeline.model import check_model_fits, describe_new_heads
from pipeline.report import metrics_tables


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_args(argv, prog="bert-pretrain evaluate")
    tokenizer = build_tokenizer(model_args)
    model = build_model(model_args, data_args)
    use_fast_paths(model, training_args.device)  # evaluated in the precision training evaluates in
    new_heads = describe_new_heads(model, model_args.model_name_or_path)
    if training_args.process_index == 0 and new_heads:
        print(new_heads)
    check_model_fits(len(tokenizer), model.config, data_args.max_seq_length)
    with Corpus(model_args, data_args, training_args) as corpus:
        dataset = build_dataset(tokenizer, model_args, data_args, training_args, corpus).dataset
    collator = build_collator(tokenizer, data_args, training_args)
    eval_dataset = build_eval_dataset(tokenizer, collator, dataset, model_args, data_args, training_args)
    if eval_dataset is None:
        raise UsageError("there is no held-out data to evaluate on; set validation_split_percentage above 0.")
    training_args.report_to = []
    metrics = build_trainer(model, tokenizer, collator, data_args, training_args, eval_dataset=eval_dataset).evaluate()
    if training_args.process_index == 0:
        print(metrics_tables({"checkpoint": metrics}))
    return metrics
