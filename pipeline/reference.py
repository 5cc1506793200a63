"""Argument dataclasses -> docs/reference.md, the field reference, so it is generated and never copied.

    python -m pipeline.reference docs/reference.md     (make docs)

tests/test_reference.py fails while docs/reference.md differs from what this writes.
"""

import dataclasses
import sys
import typing

from pipeline.arguments import (HELP_GROUPS, DataArguments, InspectArguments, ModelArguments, ProbeArguments,
                                VocabArguments)

HEADER = """# Field reference

Every field of the tool, by group, as `bert-pretrain COMMAND --help` lists them. A recipe key and a flag
are the same field: `max_seq_length: 64` in a recipe, `--max_seq_length 64` (or `--max-seq-length 64`)
on the command line, which wins. Every `transformers.TrainingArguments` field works too (`output_dir`,
`num_train_epochs`, `learning_rate`, `bf16`, `eval_strategy`, `push_to_hub`, ...): `bert-pretrain train
--help` lists them under "Trainer", with the values this tool chooses for you (precision from the hardware,
see [design](design.md)).

Generated from `pipeline/arguments.py` by `make docs`; do not edit by hand.
"""


def type_name(annotation) -> str:
    """`int`, `str | None`, `list[str]`, or a Literal's choices as `a` / `b`."""
    if typing.get_origin(annotation) is typing.Literal:
        return " / ".join(f"`{choice}`" for choice in typing.get_args(annotation))
    return f"`{annotation}`".replace("typing.", "") if not isinstance(annotation, type) else f"`{annotation.__name__}`"


def default_text(f: dataclasses.Field) -> str:
    if f.default is dataclasses.MISSING or f.default is None:
        return ""
    return f"`{str(f.default).lower() if isinstance(f.default, bool) else f.default}`"


TABLE_HEAD = ["| field | type | default | meaning |", "|---|---|---|---|"]


def field_rows(*dtypes: type) -> dict[str, str]:
    """A table row per field of the dataclasses. Types come from the classes' annotations: the fields' own `type`
    is rewritten by HfArgumentParser once a parser has been built in the process."""
    rows = {}
    for dtype in dtypes:
        hints = typing.get_type_hints(dtype)
        for f in dataclasses.fields(dtype):
            cells = [f"`{f.name}`", type_name(hints[f.name]), default_text(f), f.metadata.get("help", "")]
            rows[f.name] = "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
    return rows


def render() -> str:
    """The whole of docs/reference.md."""
    rows = field_rows(ModelArguments, DataArguments)
    lines = [HEADER]
    for title, names in HELP_GROUPS.items():
        lines += [f"## {title}", "", *TABLE_HEAD, *(rows[name] for name in names), ""]
    for command, dtype in (("inspect", InspectArguments), ("vocab", VocabArguments), ("probe", ProbeArguments)):
        lines += [f"## `{command}` only", "", *TABLE_HEAD, *field_rows(dtype).values(), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.write(render())
