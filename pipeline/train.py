"""Corpus + BERT checkpoint -> the BERT further pre-trained on MLM + NSP, saved in output_dir.

    bert-pretrain train --config recipes/quickstart.yaml [--field value ...]
    accelerate launch -m pipeline train --config recipes/quickstart.yaml
"""

import time

from transformers import set_seed

from pipeline.arguments import describe_precision, parse_args, resolved_recipe
from pipeline.build import (Corpus, build_collator, build_dataset, build_eval_dataset, build_head_training,
                            build_model, build_tokenizer, build_trainer, build_vocabulary)
from pipeline.checkpoints import check_output_dir, record_run, resolve_resume, run_settings
from pipeline.model import check_model_fits
from pipeline.probes import ProbeCallback
from pipeline.report import (build_report, describe_hardware, evaluations, final_evaluation, format_summary,
                             write_model_card, write_report)
from pipeline.stats import format_stats


def main(argv: list[str] | None = None, return_trainer: bool = False, callbacks: list | None = None):
    model_args, data_args, training_args = parse_args(argv, prog="bert-pretrain train")
    set_seed(training_args.seed)
    started = time.perf_counter()
    if training_args.process_index == 0:
        print(describe_precision(training_args))
    settings = run_settings(resolved_recipe(model_args, data_args, training_args))
    check_output_dir(training_args.output_dir, settings, overwrite=data_args.overwrite_output_dir,
                     resuming=training_args.resume_from_checkpoint is not None)

    # The corpus is read at most once, and only if the cache lacks the vocabulary or dataset made from it
    with Corpus(model_args, data_args, training_args) as corpus:
        # Load tokenizer and model (the tokenizer extended with domain words or trained from scratch, if asked)
        tokenizer, vocabulary = build_vocabulary(build_tokenizer(model_args), model_args, training_args, corpus)
        model = build_model(model_args, data_args, vocabulary)
        head_learning_rate, new_heads = build_head_training(model, model_args, data_args, training_args)
        check_model_fits(len(tokenizer), model.config, data_args.max_seq_length)

        # Load datasets
        prepared = build_dataset(tokenizer, model_args, data_args, training_args, corpus)
    if training_args.process_index == 0:
        print(format_stats(prepared.stats), prepared.describe(), sep="\n")
    collator = build_collator(tokenizer, data_args, training_args)
    eval_dataset = build_eval_dataset(tokenizer, collator, prepared.dataset, model_args, data_args, training_args)
    prepare_seconds = time.perf_counter() - started

    # Train: evaluate before the first step, at every eval_steps, and at the end
    training_args.eval_on_start = eval_dataset is not None
    if eval_dataset is None:
        training_args.eval_strategy = "no"  # nothing held out (validation_split_percentage: 0)
    probes = ProbeCallback(tokenizer, data_args.probes or [])
    trainer = build_trainer(model, tokenizer, collator, data_args, training_args,
                            train_dataset=prepared.dataset["train"], eval_dataset=eval_dataset,
                            head_learning_rate=head_learning_rate, head_weights=new_heads,
                            callbacks=[probes, *(callbacks or [])])
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
            log_history=history, before=before, after=after, stats=prepared.stats,
            recipe=resolved_recipe(model_args, data_args, training_args), real_tokens=real_tokens,
            timings={"prepare_seconds": prepare_seconds, "train_seconds": result.metrics["train_runtime"],
                     "total_seconds": time.perf_counter() - started},
            probes=probe_results, probe_history=probes.history,
            vocabulary=vocabulary.to_dict() if vocabulary else None,
            prepared={"path": prepared.path, "reused": prepared.reused, "seconds": prepared.seconds},
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
