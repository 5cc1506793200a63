"""Command line: `bert-pretrain {prepare,train} --config recipes/NAME.yaml [--field value ...]`."""

import sys

from pipeline.errors import UsageError

USAGE = """usage: bert-pretrain {prepare,train} --config RECIPE.yaml [--field value ...]

  prepare   build and cache the preprocessed dataset, print its statistics
  train     further pre-train a BERT on MLM + NSP (prepares the data if needed)

Run `bert-pretrain COMMAND --help` for every field."""


def prepare_main(argv: list[str]) -> None:
    from pipeline.arguments import parse_args
    from pipeline.model import load_tokenizer
    from pipeline.prepare import format_stats
    from pipeline.train import prepare_from_args

    model_args, data_args, training_args = parse_args(argv, prog="bert-pretrain prepare")
    tokenizer = load_tokenizer(model_args.model_name_or_path, tokenizer_name=model_args.tokenizer_name,
                               cache_dir=model_args.cache_dir, revision=model_args.model_revision,
                               trust_remote_code=model_args.trust_remote_code)
    _, stats = prepare_from_args(tokenizer, model_args, data_args, training_args)
    print(format_stats(stats))


def train_main(argv: list[str]) -> None:
    from pipeline.train import main as train

    train(argv)


COMMANDS = {"prepare": prepare_main, "train": train_main}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command = argv[0]
    try:
        COMMANDS[command](argv[1:])
    except UsageError as e:
        if debug:
            raise
        print(f"bert-pretrain {command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
