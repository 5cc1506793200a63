"""Bad input a user can cause: one clear sentence naming the problem and the fix, exit code 2, nothing written."""

import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.cache import META_FILE, cache_root
from tests.conftest import make_documents, make_tokenizer


def write(path: Path, content: str | bytes) -> str:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _non_bert_model(tmp_path: Path) -> str:
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    tokenizer = make_tokenizer()
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    DistilBertForMaskedLM(config).save_pretrained(tmp_path / "distilbert")
    tokenizer.save_pretrained(tmp_path / "distilbert")
    return str(tmp_path / "distilbert")


def _bert(tmp_path: Path, name: str, tokenizer=None, **config) -> str:
    from transformers import BertConfig, BertForPreTraining

    tokenizer = tokenizer or make_tokenizer()
    settings = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=128) | config
    BertForPreTraining(BertConfig(**settings)).save_pretrained(tmp_path / name)
    tokenizer.save_pretrained(tmp_path / name)
    return str(tmp_path / name)


# (id, command, extra arguments given tmp_path / model / corpus, the message that must be printed)
CASES = [
    ("missing file", "prepare", lambda t, m, c: ["--train_file", str(t / "nope.txt")], r"matches no file"),
    ("empty file", "prepare", lambda t, m, c: ["--train_file", write(t / "e.txt", "")], r"has no text"),
    ("whitespace only", "prepare", lambda t, m, c: ["--train_file", write(t / "w.txt", " \n\t\n\n  ")],
     r"has no text \(empty or only whitespace\)"),
    ("not utf-8", "prepare", lambda t, m, c: ["--train_file", write(t / "l.txt", "caf\xe9 cr\xe8me".encode("latin-1"))],
     r"not UTF-8 text \(byte 0xe9 at offset 3\); convert it to UTF-8"),
    ("binary", "prepare", lambda t, m, c: ["--train_file", write(t / "b.txt", bytes(range(256)) * 4)],
     r"not UTF-8|binary"),
    ("nul bytes", "prepare", lambda t, m, c: ["--train_file", write(t / "n.txt", b"text\x00with nul. More.\n")],
     r"NUL bytes, so it is binary"),
    ("no two-sentence document", "prepare",
     lambda t, m, c: ["--train_file", write(t / "one.txt", "\n".join(f"Line {i} is one sentence." for i in range(50)))],
     r"no document has two sentences\. Use --objective mlm, or --document_format blank_line"),
    ("one enormous line", "prepare",
     lambda t, m, c: ["--train_file", write(t / "huge.txt", " ".join(random.Random(0).choices(
         ["river", "stone", "water", "light"], k=30_000)))],
     r"no sentence end within \d+ tokens \(such as one enormous line.*--objective mlm"),
    ("language as a name", "prepare", lambda t, m, c: ["--language", "German"],
     r"language is 'German'; give a lower-case ISO 639-1 code such as en, de or zh"),
    ("csv without column", "prepare",
     lambda t, m, c: ["--train_file", write(t / "d.csv", 'title,body\nx,"One. Two."\ny,"Three. Four."\n')],
     r"no column 'text' \(it has title, body\); pass --text_column"),
    ("jsonl without column", "prepare",
     lambda t, m, c: ["--train_file", write(t / "d.jsonl", '{"body": "One. Two."}\n{"body": "Three. Four."}\n')],
     r"no column 'text' \(it has body\); pass --text_column"),
    ("broken jsonl", "prepare",
     lambda t, m, c: ["--train_file", write(t / "x.jsonl", '{"text": "One. Two."}\n{"text": "unclosed\n')],
     r"could not be read as json \(.+\); fix the file"),
    ("model path missing", "train", lambda t, m, c: ["--model_name_or_path", str(t / "no-such-bert")],
     r"model path .*no-such-bert does not exist"),
    ("model without an NSP head", "train", lambda t, m, c: ["--model_name_or_path", _non_bert_model(t)],
     r"is a DistilBERT \(distilbert\) model and has no next-sentence or sentence-order head for --objective nsp; it can do --objective mlm\."),
    ("no segment B embedding", "train",
     lambda t, m, c: ["--model_name_or_path", _bert(t, "one-type", type_vocab_size=1)],
     r"type_vocab_size 1, no segment B embedding.*use --objective mlm"),
    ("tokenizer of another model", "train",
     lambda t, m, c: ["--model_name_or_path", _bert(t, "small-vocab", vocab_size=60)],
     r"the tokenizer has \d+ tokens but the model's embeddings have 60 rows"),
    ("max_seq_length beyond positions", "train", lambda t, m, c: ["--max_seq_length", "256"],
     r"max_seq_length 256 is above the model's 128 position embeddings"),
    ("unknown recipe key", "train",
     lambda t, m, c: ["--config", write(t / "r.yaml", "learnin_rate: 1.0e-3\n")],
     r"unknown recipe key 'learnin_rate'.*did you mean 'learning_rate'"),
    ("wrong type", "train", lambda t, m, c: ["--learning_rate", "abc"], r"learning_rate.*abc"),
    ("zero batch size", "train", lambda t, m, c: ["--per_device_train_batch_size", "0"],
     r"per_device_train_batch_size is 0; give 1 or more"),
    ("negative batch size", "train", lambda t, m, c: ["--per_device_eval_batch_size", "-4"],
     r"per_device_eval_batch_size is -4; give 1 or more"),
]


def errors(stderr: str) -> list[str]:
    """Our lines of stderr: progress bars and library log records (which pytest shows with stacks) aside.

    In-process, an exception other than the handled ones would fail the test; the subprocess test
    below and tests/test_arguments.py check that the real command prints no traceback.
    """
    return [line for line in stderr.splitlines() if line.startswith("bert-pretrain")]


def leftovers(root: Path) -> list[str]:
    """Files a failed command left: anything in output_dir, temporary or incomplete files in the datasets cache,
    and in this tool's part of it anything but complete folders (scratch folders, a folder without prepare.json)."""
    out = [str(p) for p in (root / "out").rglob("*") if p.is_file()] if (root / "out").exists() else []
    cache = Path(os.environ["HF_DATASETS_CACHE"])
    ours = [str(p) for p in cache_root().iterdir() if not (p / META_FILE).is_file()] if cache_root().is_dir() else []
    return out + ours + [str(p) for p in cache.rglob("*") if (p.name.startswith("tmp") or "incomplete" in p.name)
                         and not p.name.endswith(".lock")]  # `datasets` keeps its lock files


@pytest.mark.parametrize("name, command, extra, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_exit_2_and_nothing_written(name, command, extra, message, tiny_model_dir,
                                                                corpus_file, tmp_path, capsys):
    argv = [command, "--model_name_or_path", tiny_model_dir, "--train_file", str(corpus_file),
            "--output_dir", str(tmp_path / "out"), "--max_seq_length", "64", "--max_steps", "1",
            "--report_to", "none", *extra(tmp_path, tiny_model_dir, corpus_file)]
    assert main(argv) == 2
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"bert-pretrain {command}: error: "), err
    assert re.search(message, err[0]), err[0]
    assert leftovers(tmp_path) == []


@pytest.mark.train
def test_an_output_dir_of_another_run_is_never_overwritten(tiny_model_dir, corpus_file, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["train", "--model_name_or_path", tiny_model_dir, "--train_file", str(corpus_file), "--output_dir",
            str(out), "--max_seq_length", "64", "--max_steps", "1", "--report_to", "none", "--save_strategy", "no"]
    assert main(argv) == 0
    weights = (out / "model.safetensors").read_bytes()
    assert json.loads((out / "run.json").read_text())["learning_rate"] == 5e-5
    capsys.readouterr()

    assert main([*argv, "--learning_rate", "1.0e-3", "--mlm_probability", "0.2", "--max_steps", "2"]) == 2
    err = errors(capsys.readouterr().err)
    assert len(err) == 1, err
    assert "holds a run with other settings (learning_rate 5e-05 -> 0.001, mlm_probability 0.15 -> 0.2)" in err[0]
    assert "--overwrite_output_dir true" in err[0]
    assert (out / "model.safetensors").read_bytes() == weights

    assert main([*argv, "--overwrite_output_dir", "true", "--resume_from_checkpoint", "latest"]) == 2
    assert "give one of the two" in errors(capsys.readouterr().err)[0]
    assert main(argv) == 0  # the same recipe again: a rerun, not another run
    assert main([*argv, "--max_steps", "2"]) == 0  # longer, or evaluated differently: still this run
    assert main([*argv, "--learning_rate", "1.0e-3", "--overwrite_output_dir", "true"]) == 0
    assert json.loads((out / "run.json").read_text())["learning_rate"] == 1e-3


@pytest.mark.slow
def test_a_full_disk_while_the_cache_is_written(tiny_model_dir, tmp_path, root, subprocess_env, datasets_cache):
    """A real failed write: the OS refuses to let files grow past RLIMIT_FSIZE, as a full disk refuses."""
    corpus = write(tmp_path / "corpus.txt", "\n".join(make_documents(1500, seed=2)) + "\n")
    out = tmp_path / "out"

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    result = subprocess.run([sys.executable, "-m", "pipeline", "prepare", "--model_name_or_path", tiny_model_dir,
                             "--train_file", corpus, "--output_dir", str(out), "--dupe_factor", "5"],
                            preexec_fn=limit_file_size, capture_output=True, text=True, env=subprocess_env, cwd=root)
    assert result.returncode == 2, result.stderr[-3000:]
    err = errors(result.stderr)
    assert len(err) == 1 and "Traceback" not in result.stderr
    assert "no room left on the disk" in err[0] and "free space" in err[0]
    assert leftovers(tmp_path) == []
    # With room again, the same command succeeds, and its dataset is complete in the HF_DATASETS_CACHE it was given
    # (the child's environment), not in output_dir, which prepare leaves alone.
    result = subprocess.run([sys.executable, "-m", "pipeline", "prepare", "--model_name_or_path", tiny_model_dir,
                             "--train_file", corpus, "--output_dir", str(out), "--dupe_factor", "5"],
                            capture_output=True, text=True, env=subprocess_env, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert subprocess_env["HF_DATASETS_CACHE"] == str(datasets_cache) and not out.exists()
    prepared = [p for p in (datasets_cache / "bert-pretrain").iterdir()]
    assert len(prepared) == 1 and prepared[0].name.startswith("dataset-") and (prepared[0] / "prepare.json").is_file()
    assert f"prepared dataset: {prepared[0]} (built in " in result.stdout and leftovers(tmp_path) == []


def tree(root: Path) -> dict[str, str]:
    """Every file under root and a hash of its bytes: what a refused command must leave exactly as it was."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    """A finished 4-step run with checkpoint-2 and checkpoint-4 (copied for each case), and its command line."""
    base = tmp_path_factory.mktemp("finished")
    corpus = write(base / "corpus.txt", "\n".join(make_documents(60)) + "\n")
    argv = ["train", "--model_name_or_path", tiny_model_dir, "--train_file", corpus, "--max_seq_length", "48",
            "--max_steps", "4", "--save_steps", "2", "--per_device_train_batch_size", "8", "--logging_steps", "1",
            "--report_to", "none", "--disable_tqdm", "true"]
    assert main([*argv, "--output_dir", str(base / "out")]) == 0
    return base / "out", argv


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


UNCHANGED = "unchanged"


def same_weights_as_before(out, template, report):  # the run had trained to its end: not a step more
    assert tree(out)["model.safetensors"] == tree(template)["model.safetensors"]


def new_plan_from_the_first_resumed_step(out, template, report):  # linear decay planned for 6 steps from step 4 on
    rates = {h["step"]: h["learning_rate"] for h in report["train"]}
    assert rates[5] == pytest.approx(5e-5 * 2 / 6) and rates[6] == pytest.approx(5e-5 * 1 / 6)


# (id, what is done to the finished run's folder first, extra arguments given that folder, exit code, the message
# (stderr for an error, else stdout), and UNCHANGED (the folder must be left exactly as it was) or, for a run that
# trains, a check of what it left)
RUN_CASES = [
    ("latest, nothing to resume, another run's model", lambda o: [shutil.rmtree(c) for c in o.glob("checkpoint-*")],
     lambda o: ["--resume_from_checkpoint", "latest", "--learning_rate", "1.0e-3"], 2,
     r"holds a run with other settings \(learning_rate 5e-05 -> 0\.001\); choose a new output_dir", UNCHANGED),
    ("mistyped checkpoint path", None, lambda o: ["--resume_from_checkpoint", str(o / "checkpoint-40")], 2,
     r"checkpoint-40 does not exist \(checkpoints in .*: checkpoint-4, checkpoint-2\); give one of them, or `latest`",
     UNCHANGED),
    ("resume with another learning rate", None, lambda o: ["--resume_from_checkpoint", "latest", "--learning_rate",
                                                           "1.0e-5"], 2,
     r"checkpoint-4 was trained with other settings \(learning_rate 1e-05 vs 5e-05 in checkpoint-4\); resume it with "
     r"the settings it was trained with", UNCHANGED),
    ("resume with another effective batch", None, lambda o: ["--resume_from_checkpoint", "latest",
                                                             "--gradient_accumulation_steps", "2"], 2,
     r"effective batch 16 \(8 per device x 2 accumulation x 1 process\) vs 8 \(8 per device x 1 accumulation x 1 "
     r"process\) in checkpoint-4", UNCHANGED),
    ("resume to a max_steps it has passed", None, lambda o: ["--resume_from_checkpoint", "latest", "--max_steps", "3"],
     2, r"max_steps 3 is below the step of .*checkpoint-4 \(4\); give max_steps 4 or more", UNCHANGED),
    ("damaged checkpoint named by its path", lambda o: truncate(o / "checkpoint-4" / "optimizer.pt"),
     lambda o: ["--resume_from_checkpoint", str(o / "checkpoint-4")], 2,
     r"checkpoint-4 cannot be resumed: optimizer.pt is truncated or damaged \(.*\); give an earlier checkpoint, or "
     r"`latest`", UNCHANGED),
    ("overwrite and resume together", None, lambda o: ["--resume_from_checkpoint", "latest", "--overwrite_output_dir",
                                                       "true"], 2, r"give one of the two", UNCHANGED),
    ("output_dir is a file", None, lambda o: ["--output_dir", str(o / "run.json")], 2,
     r"output_dir .*run.json is a file, not a folder", UNCHANGED),
    ("latest skips a damaged newest checkpoint", lambda o: truncate(o / "checkpoint-4" / "model.safetensors"),
     lambda o: ["--resume_from_checkpoint", "latest"], 0,
     r"skipping .*checkpoint-4: model.safetensors is truncated \([\d,]+ of [\d,]+ bytes\); trying the one before\n"
     r"resuming from .*checkpoint-2\n", None),
    ("resume to a higher max_steps", None, lambda o: ["--resume_from_checkpoint", "latest", "--max_steps", "6"], 0,
     r"resuming from .*checkpoint-4\ncontinuing checkpoint-4 of a 4-step run to 6 steps: the learning-rate schedule "
     r"follows the 6-step plan from step 4 on", new_plan_from_the_first_resumed_step),
    ("latest after a final save cut short", lambda o: (o / ".final-tmp").mkdir() or
     (o / ".final-tmp" / "model.safetensors").write_bytes(b"half"), lambda o: ["--resume_from_checkpoint", "latest"],
     0, r"removed the unfinished final save of an earlier run from .*\nresuming from .*checkpoint-4\n", same_weights_as_before),
    ("latest, nothing to resume, same settings", lambda o: [shutil.rmtree(c) for c in o.glob("checkpoint-*")],
     lambda o: ["--resume_from_checkpoint", "latest"], 0, r"no complete checkpoint in .*; starting fresh", None),
]


@pytest.mark.train
@pytest.mark.parametrize("name, damage, extra, code, message, after", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_a_run_never_overwrites_or_misrecords_what_is_there(name, damage, extra, code, message, after, finished_run,
                                                            tmp_path, capsys):
    template, argv = finished_run
    out = tmp_path / "out"
    shutil.copytree(template, out)
    if damage:
        damage(out)
    before = tree(out)
    capsys.readouterr()
    assert main([*argv, "--output_dir", str(out), *extra(out)]) == code
    printed = capsys.readouterr()
    if code == 2:
        err = errors(printed.err)
        assert len(err) == 1 and err[0].startswith("bert-pretrain train: error: "), err
        assert re.search(message, err[0]), err[0]
    else:
        assert re.search(message, printed.out), printed.out
    if after == UNCHANGED:
        assert tree(out) == before
        return
    # A finished run: the final files all from this run, as long as it asked, nothing staged or locked left behind.
    assert not {".lock", ".final-tmp"} & set(os.listdir(out))
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"]["max_steps"] == report["training"]["steps"] and report["recipe"]["learning_rate"] == \
        json.loads((out / "run.json").read_text())["learning_rate"]
    if after:
        after(out, template, report)


@pytest.mark.train
def test_a_run_in_progress_keeps_others_out(finished_run, tmp_path, capsys):
    from pipeline.lock import lock_output_dir

    template, argv = finished_run
    out = tmp_path / "out"
    shutil.copytree(template, out)
    before = tree(out)
    with lock_output_dir(str(out)):  # as a run in another process would hold it (flock is per open file)
        assert main([*argv, "--output_dir", str(out)]) == 2
        err = errors(capsys.readouterr().err)
        assert len(err) == 1 and re.search(rf"output_dir {out} is in use by another run \(host .+, pid {os.getpid()}, "
                                           rf"since .+\); wait for it to end, or give another output_dir", err[0])
        assert tree(out) == before | {".lock": tree(out)[".lock"]}
    assert tree(out) == before
