"""Command line: `bert-pretrain {prepare,inspect,vocab,train,evaluate,probe} --config recipes/NAME.yaml [--field value ...]`."""

import sys

from pipeline.errors import RunStopped, UsageError, is_disk_full

USAGE = """usage: bert-pretrain {prepare,inspect,vocab,train,evaluate,probe} --config RECIPE.yaml [--field value ...]

  prepare   build and cache the preprocessed dataset, print its statistics
  inspect   corpus statistics and decoded, masked training examples (--format jsonl for tools)
  vocab     how well the tokenizer fits the corpus (word-pieces per word, [UNK] rate, most split words),
            and what --add_domain_tokens N or --tokenizer_from_scratch VOCAB_SIZE would change
  train     further pre-train a BERT on MLM + NSP (prepares the data if needed)
  evaluate  held-out metrics of any checkpoint (--model_name_or_path DIR)
  probe     fine-tune two checkpoints the same way on your labelled task and compare them
            (--task_file F --model_name_or_path ADAPTED --baseline_model BASE)

Run `bert-pretrain COMMAND --help` for every field."""


def prepare_main(argv: list[str]) -> None:
    from pipeline.arguments import parse_args
    from pipeline.build import build_prepared
    from pipeline.stats import format_stats

    model_args, data_args, training_args = parse_args(argv, prog="bert-pretrain prepare", trains=False)
    _, prepared = build_prepared(model_args, data_args, training_args)
    print(format_stats(prepared.stats), prepared.describe(), sep="\n")


def inspect_main(argv: list[str]) -> None:
    from pipeline.arguments import InspectArguments, parse_args
    from pipeline.build import build_collator, build_prepared
    from pipeline.inspection import inspect_dataset

    model_args, data_args, training_args, inspect_args = parse_args(
        argv, prog="bert-pretrain inspect", extra=(InspectArguments,), trains=False)
    tokenizer, prepared = build_prepared(model_args, data_args, training_args)
    print(inspect_dataset(prepared.dataset, prepared.stats, tokenizer,
                          build_collator(tokenizer, data_args, training_args), num_examples=inspect_args.num_examples,
                          output_format=inspect_args.format, objective=data_args.objective))


def vocab_main(argv: list[str]) -> None:
    from pipeline.arguments import VocabArguments, parse_args
    from pipeline.build import Corpus, build_tokenizer, build_vocabulary
    from pipeline.fertility import count_words, fertility
    from pipeline.vocabulary import format_fit

    model_args, data_args, training_args, vocab_args = parse_args(
        argv, prog="bert-pretrain vocab", extra=(VocabArguments,), trains=False)
    tokenizer = build_tokenizer(model_args)
    with Corpus(model_args, data_args, training_args) as corpus:
        _, change = build_vocabulary(tokenizer, model_args, training_args, corpus, top_k=vocab_args.vocab_top_k)
        if change is None:
            report = format_fit(fertility(tokenizer, count_words(tokenizer, corpus.training_texts()),
                                          vocab_args.vocab_top_k))
        else:
            report = format_fit(change.before, change)
    print(report)


def train_main(argv: list[str]) -> None:
    from pipeline.train import main as train

    train(argv)


def evaluate_main(argv: list[str]) -> None:
    from pipeline.evaluation import main as evaluate

    evaluate(argv)


def probe_main(argv: list[str]) -> None:
    from pipeline.task_probe import main as probe

    probe(argv)


COMMANDS = {"prepare": prepare_main, "inspect": inspect_main, "vocab": vocab_main, "train": train_main,
            "evaluate": evaluate_main, "probe": probe_main}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The tool's own switch (TrainingArguments has a `debug` field); parse_args leaves it out of the fields.
    show_traceback = "--traceback" in argv
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command = argv[0]
    try:
        COMMANDS[command](argv[1:])
    except UsageError as e:
        if show_traceback:
            raise
        print(f"bert-pretrain {command}: error: {e}", file=sys.stderr)
        return 2
    except RunStopped as e:
        if show_traceback:
            raise
        print(f"bert-pretrain {command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        if show_traceback:
            raise
        # train says what it saved; the others leave nothing half-written that a later run would use (the cache
        # is renamed into place when complete)
        said = str(e) or "interrupted (Ctrl-C); nothing half-written is used, run it again"
        print(f"bert-pretrain {command}: {said}.", file=sys.stderr)
        return 130
    except Exception as e:
        full = _disk_full(e)
        if full is None or show_traceback:
            raise
        where = f" while writing {full.filename}" if getattr(full, "filename", None) else ""
        reason = getattr(full, "strerror", None) or str(full).strip().splitlines()[-1][:200]
        print(f"bert-pretrain {command}: error: no room left on the disk{where} ({reason}); "
              "free space, or point output_dir, dataset_dir and HF_DATASETS_CACHE at a disk with room, and run "
              "again (nothing half-written is used).", file=sys.stderr)
        return 2
    return 0


def _disk_full(error: BaseException | None) -> BaseException | None:
    """The write error behind `error`, which `datasets` and worker processes may have wrapped."""
    seen = set()
    while error is not None and id(error) not in seen:
        if is_disk_full(error):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
