"""Any checkpoint + the recipe's held-out data -> the same metrics table `train` prints.

    bert-pretrain evaluate --config recipes/quickstart.yaml --model_name_or_path outputs/quickstart
"""

import functools

from transformers import Trainer

from pipeline.arguments import parse_args
from pipeline.errors import UsageError
from pipeline.metrics import compute_metrics, preprocess_logits_for_metrics
from pipeline.model import check_model_fits, describe_new_heads
from pipeline.report import metrics_tables
from pipeline.train import (collator_from_args, eval_datasets_from_args, model_from_args, prepare_from_args,
                            tokenizer_from_args)


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_args(argv, prog="bert-pretrain evaluate")
    tokenizer = tokenizer_from_args(model_args)
    model = model_from_args(model_args, data_args)
    new_heads = describe_new_heads(model, model_args.model_name_or_path)
    if training_args.process_index == 0 and new_heads:
        print(new_heads)
    check_model_fits(len(tokenizer), model.config, data_args.max_seq_length)
    dataset, _ = prepare_from_args(tokenizer, model_args, data_args, training_args)
    collator = collator_from_args(tokenizer, data_args, training_args)
    eval_dataset = eval_datasets_from_args(tokenizer, collator, dataset, model_args, data_args, training_args)
    if eval_dataset is None:
        raise UsageError("there is no held-out data to evaluate on; set validation_split_percentage above 0.")
    training_args.report_to = []
    trainer = Trainer(model=model, args=training_args, eval_dataset=eval_dataset, processing_class=tokenizer,
                      data_collator=collator, preprocess_logits_for_metrics=preprocess_logits_for_metrics,
                      compute_metrics=functools.partial(compute_metrics, head=data_args.objective))
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        print(metrics_tables({"checkpoint": metrics}))
    return metrics
