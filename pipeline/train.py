"""Corpus + BERT checkpoint -> the BERT further pre-trained on MLM + NSP, saved in output_dir.

    bert-pretrain train --config recipes/quickstart.yaml [--field value ...]
    accelerate launch -m pipeline train --config recipes/quickstart.yaml
"""

import functools
import math
import os
import time

from transformers import set_seed

from pipeline.arguments import HEAD_LEARNING_RATE_FACTOR, describe_precision, parse_args, resolved_recipe
from pipeline.collator import DataCollatorForPreTraining, fix_eval_masks
from pipeline.metrics import compute_metrics, preprocess_logits_for_metrics
from pipeline.model import (check_model_fits, describe_head_training, head_weights, load_model, load_tokenizer,
                            new_model)
from pipeline.prepare import format_stats, prepare_dataset
from pipeline.probes import ProbeCallback
from pipeline.report import (build_report, describe_hardware, evaluations, final_evaluation, format_summary,
                             write_model_card, write_report)
from pipeline.checkpoints import check_output_dir, record_run, resolve_resume, run_settings
from pipeline.trainer import PreTrainer
from pipeline.vocab import init_new_embeddings, vocabulary_from_args


def tokenizer_from_args(model_args):
    return load_tokenizer(model_args.model_name_or_path, tokenizer_name=model_args.tokenizer_name,
                          cache_dir=model_args.cache_dir, revision=model_args.model_revision,
                          trust_remote_code=model_args.trust_remote_code)


def model_from_args(model_args, data_args, vocabulary=None):
    """The checkpoint's BERT, grown for added domain tokens; with a tokenizer from scratch, a new BERT."""
    if vocabulary is not None and vocabulary.from_scratch:
        return new_model(model_args.config_name, vocab_size=vocabulary.vocab_size, objective=data_args.objective,
                         cache_dir=model_args.cache_dir, revision=model_args.model_revision,
                         trust_remote_code=model_args.trust_remote_code)
    model = load_model(model_args.model_name_or_path, objective=data_args.objective, cache_dir=model_args.cache_dir,
                       revision=model_args.model_revision, trust_remote_code=model_args.trust_remote_code)
    if vocabulary is not None:  # the tokenizer it extends must fit the model it extends
        check_model_fits(vocabulary.vocab_size_before, model.config, data_args.max_seq_length)
        init_new_embeddings(model, vocabulary.added, vocabulary.vocab_size)
    return model


def prepare_from_args(tokenizer, model_args, data_args, training_args, train_files=None, dataset_dir=None,
                      validation_split_percentage=None, dupe_factor=None):
    """The prepared dataset for these arguments; built by the main process first, reused by the others."""
    dataset_dir_override = dataset_dir
    dataset_dir = dataset_dir or data_args.dataset_dir or os.path.join(training_args.output_dir, "dataset")
    seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    with training_args.main_process_first(desc="prepare dataset"):
        return prepare_dataset(
            tokenizer, train_files=train_files or data_args.train_file, dataset_dir=dataset_dir,
            dataset_name=None if train_files else data_args.dataset_name,
            dataset_config_name=data_args.dataset_config_name, text_column=data_args.text_column,
            document_format=data_args.document_format, language=data_args.language, cache_dir=model_args.cache_dir,
            max_seq_length=data_args.max_seq_length, short_seq_prob=data_args.short_seq_prob,
            nsp_probability=data_args.nsp_probability, pairing=data_args.pairing, objective=data_args.objective,
            dupe_factor=dupe_factor or data_args.dupe_factor or math.ceil(training_args.num_train_epochs),
            validation_split_percentage=data_args.validation_split_percentage
            if validation_split_percentage is None else validation_split_percentage,
            seed=seed, num_proc=data_args.preprocessing_num_workers, overwrite_cache=data_args.overwrite_cache,
            portable=bool(data_args.dataset_dir) and not dataset_dir_override)


def collator_from_args(tokenizer, data_args, training_args) -> DataCollatorForPreTraining:
    return DataCollatorForPreTraining(
        tokenizer, mlm_probability=data_args.mlm_probability, mask_replace_prob=data_args.mask_replace_prob,
        random_replace_prob=data_args.random_replace_prob, whole_word_mask=data_args.whole_word_mask,
        mask_count=data_args.mask_count, max_predictions_per_seq=data_args.max_predictions_per_seq,
        seed=training_args.seed)


def eval_datasets_from_args(tokenizer, collator, dataset, model_args, data_args, training_args):
    """Held-out pairs with fixed masks; with general_eval_file, {"heldout": ..., "general": ...}."""
    if "validation" not in dataset:
        return None
    n = data_args.max_eval_samples
    heldout = fix_eval_masks(dataset["validation"], collator, seed=training_args.seed)
    heldout = heldout.select(range(min(n, len(heldout)))) if n is not None else heldout
    if not data_args.general_eval_file:
        return heldout
    general, _ = prepare_from_args(
        tokenizer, model_args, data_args, training_args, train_files=[data_args.general_eval_file],
        dataset_dir=os.path.join(training_args.output_dir, "dataset-general"), validation_split_percentage=0,
        dupe_factor=1)
    general = fix_eval_masks(general["train"].remove_columns("epoch"), collator, seed=training_args.seed)
    return {"heldout": heldout, "general": general.select(range(min(n, len(general)))) if n is not None else general}


def main(argv: list[str] | None = None, return_trainer: bool = False, callbacks: list | None = None):
    model_args, data_args, training_args = parse_args(argv, prog="bert-pretrain train")
    set_seed(training_args.seed)
    started = time.perf_counter()
    if training_args.process_index == 0:
        print(describe_precision(training_args))
    settings = run_settings(resolved_recipe(model_args, data_args, training_args))
    check_output_dir(training_args.output_dir, settings, overwrite=data_args.overwrite_output_dir,
                     resuming=training_args.resume_from_checkpoint is not None)

    # Load tokenizer and model (the tokenizer extended with domain words or trained from scratch, if asked)
    tokenizer, vocabulary = vocabulary_from_args(tokenizer_from_args(model_args), model_args, data_args, training_args)
    model = model_from_args(model_args, data_args, vocabulary)
    # New heads train faster than the pretrained encoder, and the sentence head's gradient is not drowned by MLM's
    head_learning_rate = model_args.head_learning_rate or HEAD_LEARNING_RATE_FACTOR * training_args.learning_rate
    new_heads = head_weights(model)
    if data_args.objective != "mlm":
        model.sentence_gradient_share = model_args.sentence_gradient_share
    if training_args.process_index == 0:
        print(describe_head_training(new_heads, objective=data_args.objective,
                                     learning_rate=training_args.learning_rate, head_learning_rate=head_learning_rate,
                                     sentence_gradient_share=model_args.sentence_gradient_share))

    check_model_fits(len(tokenizer), model.config, data_args.max_seq_length)

    # Load datasets
    dataset, stats = prepare_from_args(tokenizer, model_args, data_args, training_args)
    if training_args.process_index == 0:
        print(format_stats(stats))
    collator = collator_from_args(tokenizer, data_args, training_args)
    eval_dataset = eval_datasets_from_args(tokenizer, collator, dataset, model_args, data_args, training_args)
    prepared = time.perf_counter()

    # Train: evaluate before the first step, at every eval_steps, and at the end
    training_args.eval_on_start = eval_dataset is not None
    if eval_dataset is None:
        training_args.eval_strategy = "no"  # nothing held out (validation_split_percentage: 0)
    probes = ProbeCallback(tokenizer, data_args.probes or [])
    trainer = PreTrainer(
        model=model, args=training_args, train_dataset=dataset["train"], eval_dataset=eval_dataset,
        processing_class=tokenizer, data_collator=collator, head=data_args.objective,
        head_learning_rate=head_learning_rate, head_weights=new_heads, callbacks=[probes, *(callbacks or [])],
        compute_metrics=functools.partial(compute_metrics, head=data_args.objective),
        preprocess_logits_for_metrics=preprocess_logits_for_metrics)
    probes_before = probes.run(model, 0) if probes.prompts else []
    if training_args.should_save:  # every node's main process with save_on_each_node
        record_run(training_args.output_dir, settings, overwrite=data_args.overwrite_output_dir)
    result = trainer.train(resume_from_checkpoint=resolve_resume(training_args.resume_from_checkpoint,
                                                                 training_args.output_dir))
    # The last step may have evaluated already (eval_steps dividing it): reuse that rather than evaluate twice
    after = {} if training_args.load_best_model_at_end else final_evaluation(trainer.state.log_history,
                                                                              trainer.state.global_step)
    if eval_dataset is not None and not after:
        after = trainer.evaluate()
    probes_after = probes.run(trainer.model, trainer.state.global_step) if probes.prompts else []
    real_tokens = trainer.total_real_tokens()

    # Save: model, tokenizer, report.json/png and a model card; then push them to the Hub if asked
    trainer.save_model()
    if trainer.is_world_process_zero():
        history = trainer.state.log_history
        before = next(iter(evaluations(history)), {})
        probe_results = {p: {"before": b, "after": a} for p, b, a in zip(probes.prompts, probes_before, probes_after)}
        report = build_report(
            log_history=history, before=before, after=after, stats=stats,
            recipe=resolved_recipe(model_args, data_args, training_args), real_tokens=real_tokens,
            timings={"prepare_seconds": prepared - started, "train_seconds": result.metrics["train_runtime"],
                     "total_seconds": time.perf_counter() - started},
            probes=probe_results, probe_history=probes.history,
            vocabulary=vocabulary.to_dict() if vocabulary else None,
            training={"steps": trainer.state.global_step, "epochs": round(trainer.state.epoch or 0.0, 2),
                      "effective_batch_size": training_args.train_batch_size
                      * training_args.gradient_accumulation_steps * training_args.world_size,
                      "processes": training_args.world_size, "precision": trainer.accelerator.mixed_precision,
                      "head_learning_rate": head_learning_rate if new_heads else None,
                      "hardware": describe_hardware(training_args.device, training_args.world_size)})
        write_report(report, training_args.output_dir)
        write_model_card(training_args.output_dir, base_model=model_args.model_name_or_path, report=report,
                         model_class=model.stock_class,
                         hub_model_id=trainer.hub_model_id if training_args.push_to_hub else None)
        print(format_summary(before, after, training_args.output_dir, model.stock_class, probe_results,
                             report["vocabulary"]))
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="End of training")
    return trainer if return_trainer else None
