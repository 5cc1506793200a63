"""Corpus + BERT checkpoint -> the BERT further pre-trained on MLM + NSP, saved in output_dir.

    bert-pretrain train --config recipes/quickstart.yaml [--field value ...]
    accelerate launch -m pipeline train --config recipes/quickstart.yaml
"""

import time

from transformers import set_seed

from pipeline import attention
from pipeline.arguments import describe_precision, parse_args, resolved_recipe
from pipeline.build import (Corpus, build_collator, build_dataset, build_eval_dataset, build_head_training,
                            build_model, build_task, build_tokenizer, build_trainer, build_vocabulary)
from pipeline.checkpoints import (RunRecord, check_finished, check_output_dir, check_resume, interruption_explained,
                                  record_run, resolve_resume, run_settings)
from pipeline.fast_paths import use_fast_paths
from pipeline.final_save import final_save, recover_final_save
from pipeline.finetune import format_task, probe_task
from pipeline.hidden_states import hidden_states_dtype
from pipeline.lock import lock_output_dir
from pipeline.model import attention_dropout_of, check_model_fits, describe_attention_dropout
from pipeline.probes import ProbeCallback
from pipeline.report import (build_report, describe_hardware, evaluations, final_evaluation, format_summary,
                             write_model_card, write_report)
from pipeline.stats import format_stats


def main(argv: list[str] | None = None, return_trainer: bool = False, callbacks: list | None = None):
    # SIGTERM (a preempted job) saves a checkpoint and stops: Trainer's just-in-time checkpointing
    model_args, data_args, training_args = parse_args(argv, prog="bert-pretrain train",
                                                      defaults=["--enable_jit_checkpoint", "true"])
    # One run at a time in output_dir (its main process holds the lock); Ctrl-C says what is saved
    with lock_output_dir(training_args.output_dir, take=training_args.should_save), \
            interruption_explained(training_args.output_dir):
        trainer = train(model_args, data_args, training_args, callbacks)
    return trainer if return_trainer else None


def train(model_args, data_args, training_args, callbacks: list | None = None):
    set_seed(training_args.seed)
    started = time.perf_counter()
    output_dir, main_process = training_args.output_dir, training_args.process_index == 0
    if main_process:
        print(describe_precision(training_args))
    if training_args.should_save and (recovered := recover_final_save(output_dir)):
        print(recovered)

    # The checkpoint to continue (damaged ones skipped) and whether this run may write here: before any work
    settings = run_settings(resolved_recipe(model_args, data_args, training_args))
    checkpoint = resolve_resume(training_args.resume_from_checkpoint, output_dir, main_process=main_process)
    check_output_dir(output_dir, settings, overwrite=data_args.overwrite_output_dir,
                     resuming=training_args.resume_from_checkpoint is not None, checkpoint=checkpoint)
    if checkpoint and (change := check_resume(checkpoint, settings, processes=training_args.world_size,
                                              max_steps=training_args.max_steps,
                                              num_train_epochs=training_args.num_train_epochs)) and main_process:
        print(change)
    task, task_budget = build_task(data_args, training_args)  # the user's task file: refused now, not after training
    if task and main_process:
        print(task.describe())

    # The corpus is read at most once, and only if the cache lacks the vocabulary or dataset made from it
    with Corpus(model_args, data_args, training_args) as corpus:
        # Load tokenizer and model (the tokenizer extended with domain words or trained from scratch, if asked)
        tokenizer, vocabulary = build_vocabulary(build_tokenizer(model_args), model_args, training_args, corpus)
        model = build_model(model_args, data_args, vocabulary)
        if main_process and model.config_as_saved:
            print(describe_attention_dropout(model))
        paths = use_fast_paths(model, training_args.device)
        if paths.attention == attention.NAME and main_process:
            print(f"attention: dropout {attention_dropout_of(model):g} on a CPU, in cache-sized blocks of examples "
                  "(PyTorch's fused CPU attention has no dropout).")
        elif paths.attention == attention.GPU_NAME and main_process:
            print("attention: PyTorch's flash or memory-efficient kernel, not cuDNN's (which builds a plan for each "
                  "new batch width).")
        head_training = build_head_training(model, model_args, data_args, training_args)
        check_model_fits(len(tokenizer), model.config, data_args.max_seq_length)

        # Load datasets
        prepared = build_dataset(tokenizer, model_args, data_args, training_args, corpus)
    if main_process:
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
                            head_training=head_training,
                            callbacks=[probes, RunRecord(settings, training_args.world_size), *(callbacks or [])])
    probes_before = probes.run(model, 0) if probes.prompts else []
    if training_args.should_save:  # every node's main process with save_on_each_node
        record_run(output_dir, settings, overwrite=data_args.overwrite_output_dir)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    check_finished(trainer.state, output_dir)  # stopped by SIGTERM: its checkpoint is saved, no final model
    # The last step may have evaluated already (eval_steps dividing it): reuse that rather than evaluate twice
    after = {} if training_args.load_best_model_at_end else final_evaluation(trainer.state.log_history,
                                                                              trainer.state.global_step)
    if eval_dataset is not None and not after:
        after = trainer.evaluate()
    probes_after = probes.run(trainer.model, trainer.state.global_step) if probes.prompts else []
    real_tokens = trainer.total_real_tokens()

    # Save: model, tokenizer, report.json/png and a model card, all published at once; then pushed to the Hub if asked
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
                  "head_learning_rate": head_training.learning_rate if head_training.weights else None,
                  "head_moments": "separate" if head_training.separate_moments else "shared",
                  "attention_dropout": attention_dropout_of(model),
                  "attention": model.config._attn_implementation,
                  "dropout": "pipeline.dropout.CpuDropout" if paths.dropouts else "torch.nn.Dropout",
                  "hidden_states": hidden_states_dtype(paths.hidden_states, trainer.accelerator.mixed_precision),
                  "hardware": describe_hardware(training_args.device, training_args.world_size)})
    with final_save(output_dir, main_process=training_args.should_save) as staging:
        trainer.save_model(staging, _internal_call=True)  # no Hub push from staging: push_to_hub below sends it all
        if trainer.is_world_process_zero():
            if task:  # the start model and the saved one, fine-tuned the same way on the user's task
                report["task"] = probe_task(task, {"baseline": model_args.model_name_or_path, "adapted": staging},
                                            task_budget, seed=training_args.seed,
                                            progress=not training_args.disable_tqdm)
                report["task"]["models"]["adapted"]["model"] = output_dir  # staging is renamed to it
            write_report(report, staging)
            write_model_card(output_dir, base_model=model_args.model_name_or_path, report=report,
                             model_class=model.stock_class, save_directory=staging,
                             hub_model_id=trainer.hub_model_id if training_args.push_to_hub else None)
    if trainer.is_world_process_zero():
        print(format_summary(before, after, output_dir, model.stock_class, probe_results, report["vocabulary"]))
        if report["task"]:
            print("", format_task(report["task"]), sep="\n")
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="End of training")
    return trainer
