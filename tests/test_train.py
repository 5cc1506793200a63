"""The real entry point, in-process, on a tiny BERT: it trains, evaluates, saves, and the folder reloads."""

import json
import os
import re

import pytest
import torch
from transformers import AutoTokenizer, BertForPreTraining

from pipeline.__main__ import main as cli
from pipeline.cache import cache_root
from pipeline.train import main
from tests.conftest import FAST_TRAIN as FAST

pytestmark = pytest.mark.train  # every test here runs a command end to end


def test_train_runs_and_output_reloads(tiny_model_dir, corpus_file, tmp_path, capsys):
    out = str(tmp_path / "run")
    trainer = main(["--model_name_or_path", tiny_model_dir, "--train_file", corpus_file, "--output_dir", out,
                    "--max_seq_length", "64", "--max_steps", "4", "--learning_rate", "1.0e-3",
                    "--validation_split_percentage", "10", *FAST], return_trainer=True)
    printed = capsys.readouterr().out
    table = printed[printed.index("held-out"):].splitlines()
    assert table[0].split() == ["held-out", "before", "after"]
    assert [row.split()[0] for row in table[1:6]] == ["MLM", "MLM", "MLM", "NSP", "NSP"]
    assert "MLM loss" in printed and "NSP accuracy" in printed and f"BertForPreTraining.from_pretrained('{out}')" in printed
    assert trainer.state.global_step == 4
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    evals = [h for h in trainer.state.log_history if "eval_mlm_loss" in h]
    assert [h["step"] for h in evals] == [0, 4] and {"eval_nsp_accuracy", "eval_mlm_accuracy", "eval_perplexity"} <= set(evals[0])

    model = BertForPreTraining.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(model) is BertForPreTraining and tokenizer.vocab_size == model.config.vocab_size
    trained = trainer.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
    # output_dir holds the run only; the prepared dataset is in the `datasets` cache, named by its inputs.
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors", "report.json", "report.png",
                                       "run.json", "tokenizer.json", "tokenizer_config.json", "training_args.bin"]
    prepared = json.load(open(os.path.join(out, "report.json")))["prepared"]
    assert os.path.dirname(prepared["path"]) == str(cache_root()) and not prepared["reused"]


def test_cli_train_and_prepare_share_the_cache(tiny_model_dir, corpus_file, tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["--model_name_or_path", tiny_model_dir, "--train_file", corpus_file, "--output_dir", out,
            "--max_seq_length", "32"]
    assert cli(["prepare", *args]) == 0
    stats = capsys.readouterr().out
    assert "train:" in stats and "negatives" in stats and "(built in " in stats
    path = re.search(r"prepared dataset: (\S+) \(built", stats).group(1)
    stamp = os.path.getmtime(os.path.join(path, "prepare.json"))
    assert cli(["train", *args, "--max_steps", "1", *FAST]) == 0
    assert f"prepared dataset: {path} (reused)" in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(path, "prepare.json")) == stamp
    assert json.load(open(os.path.join(out, "config.json")))["architectures"] == ["BertForPreTraining"]


def test_runs_in_two_output_dirs_prepare_once(tiny_model_dir, corpus_file, tmp_path):
    """A learning-rate sweep: the second run, in another output_dir, reuses what the first one prepared."""
    base = ["--model_name_or_path", tiny_model_dir, "--train_file", corpus_file, "--max_seq_length", "32",
            "--max_steps", "1", *FAST]
    main([*base, "--output_dir", str(tmp_path / "a")])
    main([*base, "--output_dir", str(tmp_path / "b"), "--learning_rate", "1.0e-3"])
    reports = [json.load(open(tmp_path / name / "report.json")) for name in ("a", "b")]
    assert [r["prepared"]["reused"] for r in reports] == [False, True]
    assert reports[0]["prepared"]["path"] == reports[1]["prepared"]["path"] and reports[0]["corpus"] == reports[1]["corpus"]
    assert [p.name.split("-")[0] for p in cache_root().iterdir()] == ["dataset"]  # one copy, no leftovers


def test_a_pinned_dataset_dir_trains_where_the_corpus_is_not(tiny_model_dir, corpus_file, tmp_path, capsys):
    """prepare --dataset_dir on one machine, the folder copied to another, train --dataset_dir there: no corpus,
    nothing prepared again."""
    import shutil

    args = ["--model_name_or_path", tiny_model_dir, "--train_file", corpus_file, "--max_seq_length", "32"]
    assert cli(["prepare", *args, "--output_dir", str(tmp_path / "a"), "--dataset_dir", str(tmp_path / "made")]) == 0
    shutil.copytree(tmp_path / "made", tmp_path / "copied")
    os.remove(corpus_file)
    capsys.readouterr()
    assert cli(["train", *args, "--output_dir", str(tmp_path / "b"), "--dataset_dir", str(tmp_path / "copied"),
                "--max_steps", "1", *FAST]) == 0
    assert f"prepared dataset: {tmp_path / 'copied'} (reused)" in capsys.readouterr().out
    assert not cache_root().exists() or not any(cache_root().iterdir())  # nothing was built in the cache


def test_meditations_recipe_runs_offline_on_local_files(meditations, root, tmp_path):
    from tests.conftest import make_model, make_tokenizer

    torch.manual_seed(0)
    local = tmp_path / "bert"
    tokenizer = make_tokenizer()
    make_model(len(tokenizer), max_position_embeddings=512).save_pretrained(local)
    tokenizer.save_pretrained(local)
    trainer = main(["--config", os.path.join(root, "recipes", "meditations-bert-base.yaml"),
                    "--model_name_or_path", str(local), "--train_file", meditations,
                    "--output_dir", str(tmp_path / "out"), "--max_steps", "2", "--save_strategy", "no"],
                   return_trainer=True)
    assert trainer.state.global_step == 2 and trainer.args.per_device_train_batch_size == 16
    assert BertForPreTraining.from_pretrained(tmp_path / "out").config.max_position_embeddings == 512


def test_sop_and_mlm_objectives(tiny_model_dir, corpus_file, tmp_path, capsys):
    from transformers import BertForMaskedLM

    base = ["--model_name_or_path", tiny_model_dir, "--train_file", corpus_file, "--max_seq_length", "48",
            "--max_steps", "2", *FAST]
    main([*base, "--objective", "sop", "--output_dir", str(tmp_path / "sop")])
    assert "SOP accuracy" in capsys.readouterr().out
    main([*base, "--objective", "mlm", "--output_dir", str(tmp_path / "mlm")])
    printed = capsys.readouterr().out
    assert "MLM accuracy" in printed and "NSP" not in printed and "BertForMaskedLM.from_pretrained" in printed
    assert type(BertForMaskedLM.from_pretrained(tmp_path / "mlm")) is BertForMaskedLM


def test_inspect_text_and_jsonl(tiny_model_dir, corpus_file, tmp_path, capsys):
    args = ["--model_name_or_path", tiny_model_dir, "--train_file", corpus_file, "--output_dir", str(tmp_path),
            "--max_seq_length", "48"]
    assert cli(["inspect", *args, "--num_examples", "3"]) == 0
    text = capsys.readouterr().out
    assert "Sentence lengths" in text and "#2 label" in text and "[CLS]" in text
    examples = text.split("marks a predicted token):", 1)[1]  # the header itself shows <shown=original>
    assert len(re.findall(r"<[^\s<>=]+=[^\s<>=]+>", examples)) >= 3  # masked positions, as <shown=original>
    assert cli(["inspect", *args, "--num_examples", "7", "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 7
    for row in rows:
        assert {"input_ids", "token_type_ids", "labels", "next_sentence_label", "attention_mask"} <= set(row)
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["token_type_ids"])
        masked = [i for i, label in enumerate(row["labels"]) if label != -100]
        assert all(row["attention_mask"][i] == 1 for i in masked)


def test_max_seq_length_beyond_positions_and_no_held_out_data(tiny_model_dir, corpus_file, tmp_path):
    from pipeline.errors import UsageError

    base = ["--model_name_or_path", tiny_model_dir, "--train_file", corpus_file, *FAST]
    with pytest.raises(UsageError, match="above the model's 128 position embeddings"):
        main([*base, "--output_dir", str(tmp_path / "a"), "--max_seq_length", "256"])
    # Nothing held out: training still runs, with scheduled evaluation turned off.
    trainer = main([*base, "--output_dir", str(tmp_path / "b"), "--max_seq_length", "32", "--max_steps", "2",
                    "--validation_split_percentage", "0", "--eval_strategy", "steps", "--eval_steps", "1"],
                   return_trainer=True)
    assert trainer.state.global_step == 2 and not [h for h in trainer.state.log_history if "eval_loss" in h]


def test_same_seed_same_pairs_masks_and_loss_curves(tiny_model_dir, corpus_file, tmp_path):
    """Two runs with one seed build identical pairs, draw identical masks and log identical losses on CPU."""
    runs = []
    for name in ("a", "b", "c"):
        seed = "3" if name == "c" else "1"
        trainer = main(["--model_name_or_path", tiny_model_dir, "--train_file", corpus_file, "--output_dir",
                        str(tmp_path / name), "--max_seq_length", "48", "--max_steps", "6", "--eval_steps", "3",
                        "--eval_strategy", "steps", "--learning_rate", "1.0e-3", "--seed", seed, *FAST],
                       return_trainer=True)
        rows = trainer.train_dataset.select(range(8)).to_list()
        batches = []
        for epoch in (0, 1):
            trainer.data_collator.epoch = epoch
            batches.append(trainer.data_collator(rows))
        history = [{k: v for k, v in h.items() if "runtime" not in k and "per_second" not in k}
                   for h in trainer.state.log_history]
        runs.append((trainer.train_dataset[:], batches, history))
    (pairs_a, masks_a, history_a), (pairs_b, masks_b, history_b), (pairs_c, _, history_c) = runs
    assert pairs_a == pairs_b
    for x, y in zip(masks_a, masks_b):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(masks_a[0]["labels"], masks_a[1]["labels"])  # the same rows get new masks next epoch
    assert history_a == history_b and [h["loss"] for h in history_a if "loss" in h]
    assert pairs_a != pairs_c and history_a != history_c
