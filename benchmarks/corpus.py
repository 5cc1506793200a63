"""A generated corpus of a given size, for preprocessing benchmarks: never committed, made at run time.

Documents are 2-15 sentences drawn from the CPython documentation and (when present) the
seed's Meditations, one document per line, so the text has real sentence structure.
"""

import os
import random

from pipeline.corpus import pydoc_topics_text
from pipeline.sentences import split_sentences

MEDITATIONS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "meditations.txt")


def sentence_pool() -> list[str]:
    text = pydoc_topics_text()
    if os.path.isfile(MEDITATIONS):
        text += "\n" + open(MEDITATIONS, encoding="utf-8").read()
    return [s for line in text.splitlines() for s in split_sentences(line)]


def write_corpus(path: str, megabytes: float, seed: int = 0) -> str:
    rng = random.Random(seed)
    pool = sentence_pool()
    target = int(megabytes * 1_000_000)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            line = " ".join(rng.choice(pool) for _ in range(rng.randint(2, 15))) + "\n"
            f.write(line)
            written += len(line.encode())
    return path
