"""A labelled task from the Python documentation, for the task probe: which part of the reference a paragraph of
pydoc_data.topics comes from (statements, expressions, the data model and built-in types, the execution model).

    python benchmarks/pydoc_task.py /tmp/pydoc-task.jsonl
    bert-pretrain probe --task_file /tmp/pydoc-task.jsonl --model_name_or_path outputs/quickstart

The quickstart pre-trains on these paragraphs: a task from the domain the model was adapted to.
"""

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


if __name__ == "__main__":
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows())
