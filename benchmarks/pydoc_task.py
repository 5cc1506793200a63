"""Labelled tasks from the Python documentation, for the task probe.

- classification: which part of the reference a paragraph of pydoc_data.topics comes from (statements,
  expressions, the data model and built-in types, the execution model);
- tags (--tags): token classification of the paragraphs' words: exception classes (B-EXCEPTION), special
  method and attribute names (B-DUNDER) and built-in functions (B-BUILTIN), the rest O.

    python benchmarks/pydoc_task.py /tmp/pydoc-task.jsonl [--tags]
    bert-pretrain probe --task_file /tmp/pydoc-task.jsonl --model_name_or_path outputs/quickstart
    bert-pretrain probe --task_file /tmp/pydoc-tags.jsonl --task_text_column tokens --task_tags_column tags ...

The quickstart pre-trains on these paragraphs: a task from the domain the model was adapted to.
"""

import builtins
import json
import random
import re
import sys

from pydoc_data.topics import topics

GROUPS = {
    "statement": "assert assignment async augassign break class compound continue del else for function global if "
                 "import nonlocal pass raise return try while with yield",
    "expression": "atom-identifiers atom-literals attribute-references await binary bitwise booleans calls "
                  "comparisons conversions exprlists floating formatstrings identifiers imaginary in integers lambda "
                  "numbers operator-summary power shifting slicings strings subscriptions unary",
    "data model": "attribute-access bltin-code-objects bltin-ellipsis-object bltin-null-object bltin-type-objects "
                  "callable-types context-managers customization dict lists numeric-types objects sequence-types "
                  "specialattrs specialnames string-methods truth types typesfunctions typesmapping typesmethods "
                  "typesmodules typesseq typesseq-mutable",
    "execution": "debugger dynamic-features exceptions execmodel id-classes naming",
}


def rows(per_class: int = 80, seed: int = 0) -> list[dict]:
    """Up to per_class prose paragraphs (12+ words, not code, in one group only) of each group, drawn with a seed."""
    rng = random.Random(seed)
    groups = {label: list(dict.fromkeys(" ".join(p.split()) for name in names.split()
                                        for p in re.split(r"\n\s*\n", topics[name])))
              for label, names in GROUPS.items()}
    shared = {p for label, ps in groups.items() for other, qs in groups.items() if other != label for p in set(ps) & set(qs)}
    out = []
    for label, paragraphs in groups.items():
        paragraphs = [p for p in paragraphs if len(p.split()) >= 12 and not p.startswith((">>>", "...")) and p not in shared]
        out += [{"text": p, "label": label} for p in rng.sample(paragraphs, min(per_class, len(paragraphs)))]
    return out


# Built-in functions whose names are not also English words (a "type" or "list" in prose is not the function)
FUNCTIONS = {name for name, value in vars(builtins).items()
             if callable(value) and not isinstance(value, type) and not name.startswith("_") and len(name) > 3
             and name not in {"open", "next", "input", "print", "round", "format", "help", "exit", "quit", "copyright",
                              "credits", "license", "hash", "iter", "vars", "sorted", "reversed", "compile", "delattr"}}
EXCEPTIONS = {name for name, value in vars(builtins).items() if isinstance(value, type)
              and issubclass(value, BaseException)}


def tag(word: str) -> str:
    name = word.strip(".,;:()[]'\"`").split("(")[0]
    if name in EXCEPTIONS:
        return "B-EXCEPTION"
    if re.fullmatch(r"(\w+\.)?__\w+__", name):
        return "B-DUNDER"
    return "B-BUILTIN" if name in FUNCTIONS else "O"


def tag_rows(limit: int = 400, seed: int = 0) -> list[dict]:
    """Prose paragraphs of every topic (12-120 words) that name one such word or more, as words and tags."""
    rng = random.Random(seed)
    paragraphs = list(dict.fromkeys(" ".join(p.split()) for text in topics.values() for p in re.split(r"\n\s*\n", text)))
    out = []
    for p in paragraphs:
        words = p.split()
        tags = [tag(w) for w in words]
        if 12 <= len(words) <= 120 and not p.startswith((">>>", "...")) and any(t != "O" for t in tags):
            out.append({"tokens": words, "tags": tags})
    return rng.sample(out, min(limit, len(out)))


if __name__ == "__main__":
    made = tag_rows() if "--tags" in sys.argv else rows()
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in made)
