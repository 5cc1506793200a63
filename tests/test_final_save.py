"""The final save: model, tokenizer, config, report and card appear in output_dir together or not at all."""

import json

import pytest

from pipeline.final_save import COMPLETE, STAGING, final_save, recover_final_save


def previous_run(out):
    """output_dir after an earlier finished run, with its checkpoints and run record."""
    out.mkdir()
    for name, text in {"model.safetensors": "old weights", "config.json": "old config", "report.json": "old report",
                       "report.png": "old plot", "README.md": "old card", "run.json": "{}"}.items():
        (out / name).write_text(text)
    (out / "checkpoint-4").mkdir()


def write_new(staging):
    for name in ("model.safetensors", "config.json", "tokenizer.json", "report.json", "report.png", "README.md"):
        (staging / name).write_text(f"new {name}")


def files(out):
    return {p.name: p.read_text() for p in out.iterdir() if p.is_file()}


def test_a_final_save_replaces_the_previous_one_whole(tmp_path):
    out = tmp_path / "out"
    previous_run(out)
    with final_save(str(out)) as staging:
        write_new(tmp_path / "out" / STAGING)
        assert staging == str(out / STAGING) and files(out)["report.json"] == "old report"  # nothing published yet
    assert files(out) == {"run.json": "{}", **{n: f"new {n}" for n in ("model.safetensors", "config.json",
                                                                       "tokenizer.json", "report.json", "report.png",
                                                                       "README.md")}}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["checkpoint-4"]


def test_an_error_or_interrupt_during_the_save_leaves_the_previous_run_as_it_was(tmp_path):
    out = tmp_path / "out"
    previous_run(out)
    before = files(out)
    with pytest.raises(KeyboardInterrupt):
        with final_save(str(out)) as staging:
            (out / STAGING / "model.safetensors").write_text("new weights")
            raise KeyboardInterrupt
    assert files(out) == before and not (out / STAGING).exists() and staging


def test_a_kill_before_the_commit_is_cleaned_up_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    previous_run(out)
    before = files(out)
    (out / STAGING).mkdir()  # what a kill -9 in the middle of writing the staging folder leaves
    (out / STAGING / "model.safetensors").write_text("new weights, half written")
    assert "removed the unfinished final save" in recover_final_save(str(out))
    assert files(out) == before and not (out / STAGING).exists()
    assert recover_final_save(str(out)) is None


def test_a_kill_after_the_commit_is_finished_by_the_next_run_and_never_mixes(tmp_path):
    out = tmp_path / "out"
    previous_run(out)
    staging = out / STAGING
    staging.mkdir()
    write_new(staging)
    names = sorted(p.name for p in staging.iterdir())
    (staging / COMPLETE).write_text(json.dumps(names))
    # A kill in the middle of publishing: the old report and card were removed, the new weights moved in.
    for name in ("report.json", "report.png", "README.md"):
        (out / name).unlink()
    (staging / "model.safetensors").replace(out / "model.safetensors")
    mixed = files(out)
    assert mixed["model.safetensors"] == "new model.safetensors" and "report.json" not in mixed  # never the old one
    assert "finished the final save" in recover_final_save(str(out))
    assert files(out) == {"run.json": "{}", **{n: f"new {n}" for n in names}} and not staging.exists()
