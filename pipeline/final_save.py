"""A finished run -> its model, tokenizer, config, report and card in output_dir, all together or not at all.

    with final_save(output_dir) as staging:      # pipeline/train.py
        trainer.save_model(staging); write_report(report, staging); ...

Everything is written into `<output_dir>/.final-tmp` first; a list of what it holds, written last
(`COMPLETE`), commits it; the files are then moved into output_dir, each by an atomic rename. A kill before
the commit leaves output_dir as it was (the previous run's files untouched) and the next `train` removes the
staging folder; a kill after it is finished by the next `train`, which moves the rest. The previous run's
report and card are removed before any new file arrives, so new weights never sit beside an old report.
"""

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

STAGING = ".final-tmp"
COMPLETE = "COMPLETE"
# Files that describe the model: removed first and arriving last, so they never describe other weights.
DESCRIPTIONS = ("report.json", "report.png", "README.md")


@contextmanager
def final_save(output_dir: str, *, main_process: bool = True):
    """Yields the staging folder to write the final files into; on leaving without an error, publishes them.

    Every process enters (saving a model may gather it from all of them); only the main process prepares,
    commits and publishes. An error or a kill inside leaves output_dir as it was.
    """
    staging = Path(output_dir) / STAGING
    if main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    try:
        yield str(staging)
    except BaseException:  # a full disk, Ctrl-C: nothing of this save is kept
        if main_process:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if main_process:
        _commit(staging)
        _publish(Path(output_dir))


def recover_final_save(output_dir: str) -> str | None:
    """Finishes a committed final save that a kill interrupted, or removes an uncommitted one; says which."""
    staging = Path(output_dir) / STAGING
    if not staging.is_dir():
        return None
    if (staging / COMPLETE).is_file():
        _publish(Path(output_dir))
        return f"finished the final save in {output_dir} that an earlier run was stopped in"
    shutil.rmtree(staging)
    return f"removed the unfinished final save of an earlier run from {output_dir} (its files were never published)"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(staging: Path) -> None:
    # The files' data reach the disk before the list that commits them, so a committed save is whole after a crash.
    names = sorted(p.name for p in staging.iterdir() if p.is_file())
    for name in names:
        _fsync(staging / name)
    tmp = staging / f"{COMPLETE}.tmp"
    tmp.write_text(json.dumps(names))
    _fsync(tmp)
    tmp.replace(staging / COMPLETE)
    _fsync(staging)


def _publish(output_dir: Path) -> None:
    staging = output_dir / STAGING
    names = json.loads((staging / COMPLETE).read_text())
    for name in DESCRIPTIONS:
        if name not in names or (staging / name).exists():  # not already this save's own, moved before a kill
            (output_dir / name).unlink(missing_ok=True)
    # Weights of the previous run under names this save does not write (shards of a larger model) go too.
    for old in output_dir.glob("model*.safetensors*"):
        if old.name not in names:
            old.unlink()
    for name in sorted(names, key=lambda n: n in DESCRIPTIONS):
        if (staging / name).exists():  # an interrupted publish moved some already
            os.replace(staging / name, output_dir / name)
    _fsync(output_dir)
    (staging / COMPLETE).unlink()
    shutil.rmtree(staging)
