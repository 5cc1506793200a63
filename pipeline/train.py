"""Corpus + BERT checkpoint -> the BERT further pre-trained on MLM + NSP, saved in output_dir.

    bert-pretrain train --config recipes/quickstart.yaml [--field value ...]
    accelerate launch -m pipeline train --config recipes/quickstart.yaml
"""

import functools
import math
import os

from transformers import set_seed

from pipeline.arguments import parse_args
from pipeline.collator import DataCollatorForPreTraining, fix_eval_masks
from pipeline.metrics import compute_metrics, preprocess_logits_for_metrics
from pipeline.model import load_model, load_tokenizer
from pipeline.prepare import format_stats, prepare_dataset
from pipeline.report import format_summary
from pipeline.trainer import PreTrainer


def prepare_from_args(tokenizer, model_args, data_args, training_args):
    """The prepared dataset for these arguments; built by the main process first, reused by the others."""
    dataset_dir = data_args.dataset_dir or os.path.join(training_args.output_dir, "dataset")
    with training_args.main_process_first(desc="prepare dataset"):
        return prepare_dataset(
            tokenizer, train_files=data_args.train_file, dataset_dir=dataset_dir,
            dataset_name=data_args.dataset_name, dataset_config_name=data_args.dataset_config_name,
            text_column=data_args.text_column, document_format=data_args.document_format,
            cache_dir=model_args.cache_dir, max_seq_length=data_args.max_seq_length,
            short_seq_prob=data_args.short_seq_prob, nsp_probability=data_args.nsp_probability,
            pairing=data_args.pairing, objective=data_args.objective,
            dupe_factor=data_args.dupe_factor or math.ceil(training_args.num_train_epochs),
            validation_split_percentage=data_args.validation_split_percentage, seed=training_args.data_seed
            if training_args.data_seed is not None else training_args.seed,
            num_proc=data_args.preprocessing_num_workers, overwrite_cache=data_args.overwrite_cache)


def tokenizer_from_args(model_args):
    return load_tokenizer(model_args.model_name_or_path, tokenizer_name=model_args.tokenizer_name,
                          cache_dir=model_args.cache_dir, revision=model_args.model_revision,
                          trust_remote_code=model_args.trust_remote_code)


def collator_from_args(tokenizer, data_args, training_args) -> DataCollatorForPreTraining:
    return DataCollatorForPreTraining(
        tokenizer, mlm_probability=data_args.mlm_probability, mask_replace_prob=data_args.mask_replace_prob,
        random_replace_prob=data_args.random_replace_prob, whole_word_mask=data_args.whole_word_mask,
        mask_count=data_args.mask_count, max_predictions_per_seq=data_args.max_predictions_per_seq,
        seed=training_args.seed)


def main(argv: list[str] | None = None, return_trainer: bool = False):
    model_args, data_args, training_args = parse_args(argv, prog="bert-pretrain train")
    set_seed(training_args.seed)

    # Load tokenizer and model
    tokenizer = tokenizer_from_args(model_args)
    model = load_model(model_args.model_name_or_path, objective=data_args.objective, cache_dir=model_args.cache_dir,
                       revision=model_args.model_revision, trust_remote_code=model_args.trust_remote_code)

    # Load datasets
    dataset, stats = prepare_from_args(tokenizer, model_args, data_args, training_args)
    if training_args.process_index == 0:
        print(format_stats(stats))
    collator = collator_from_args(tokenizer, data_args, training_args)
    eval_dataset = None
    if "validation" in dataset:
        eval_dataset = fix_eval_masks(dataset["validation"], collator, seed=training_args.seed)
        if data_args.max_eval_samples is not None:
            eval_dataset = eval_dataset.select(range(min(data_args.max_eval_samples, len(eval_dataset))))

    # Train
    trainer = PreTrainer(
        model=model, args=training_args, train_dataset=dataset["train"], eval_dataset=eval_dataset,
        processing_class=tokenizer, data_collator=collator, head=data_args.objective,
        compute_metrics=functools.partial(compute_metrics, head=data_args.objective),
        preprocess_logits_for_metrics=preprocess_logits_for_metrics)
    before = trainer.evaluate(metric_key_prefix="eval") if eval_dataset is not None else {}
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    after = trainer.evaluate(metric_key_prefix="eval") if eval_dataset is not None else {}

    # Save
    trainer.save_model()
    if trainer.is_world_process_zero():
        print(format_summary(before, after, training_args.output_dir, model.stock_class))
    return trainer if return_trainer else None
