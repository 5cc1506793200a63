"""A real run on a tiny BERT: report.json, report.png, model card, TensorBoard, evaluate, reloading."""

import glob
import json
import os

import pytest
from transformers import BertForMaskedLM, BertForPreTraining, BertModel

from pipeline.__main__ import main as cli
from pipeline.train import main
from tests.conftest import make_documents

pytestmark = pytest.mark.train  # a real run, shared by the tests of its outputs


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    corpus, general = tmp / "corpus.txt", tmp / "general.txt"
    corpus.write_text("\n".join(make_documents(60, seed=1)) + "\n")
    general.write_text("\n".join(make_documents(20, seed=2)) + "\n")
    out = str(tmp / "run")
    args = ["--model_name_or_path", tiny_model_dir, "--train_file", str(corpus), "--output_dir", out,
            "--max_seq_length", "48", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
            "--validation_split_percentage", "10", "--save_strategy", "no", "--disable_tqdm", "true"]
    trainer = main([*args, "--max_steps", "4", "--learning_rate", "1.0e-3", "--logging_steps", "1",
                    "--eval_strategy", "steps", "--eval_steps", "2", "--report_to", "tensorboard",
                    "--general_eval_file", str(general), "--probes", "The [MASK] flows to the sea.",
                    "A bird sings in the [MASK]."], return_trainer=True)
    return trainer, out, args


def test_report_json_agrees_with_trainer_logs(run):
    trainer, out, _ = run
    report = json.load(open(os.path.join(out, "report.json")))
    history = trainer.state.log_history
    assert report["train"] == [h for h in history if "loss" in h]
    assert [h["step"] for h in report["train"]] == [1, 2, 3, 4]
    assert {"mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy", "perplexity"} <= set(report["train"][0])
    evals = [h["step"] for h in report["eval"]]
    assert evals[0] == 0 and 2 in evals and evals[-1] == 4
    assert report["before"]["step"] == 0
    for prefix in ("eval_heldout_", "eval_general_"):
        assert prefix + "mlm_loss" in report["before"] and prefix + "nsp_accuracy" in report["after"]
    assert report["after"]["eval_heldout_mlm_loss"] == report["eval"][-1]["eval_heldout_mlm_loss"]
    assert report["real_tokens"] > 0
    assert report["real_tokens_per_second"] == pytest.approx(report["real_tokens"] / report["timings"]["train_seconds"])
    assert report["corpus"]["train"]["documents"] == 54 and report["recipe"]["max_seq_length"] == 48
    assert "hub_token" not in report["recipe"]
    assert set(report["probes"]) == {"The [MASK] flows to the sea.", "A bird sings in the [MASK]."}
    assert len(report["probes"]["A bird sings in the [MASK]."]["after"]) == 5
    assert [h["step"] for h in report["probe_history"]] == [0, 2, 4]


def test_report_png_is_a_real_image(run):
    import matplotlib.image

    _, out, _ = run
    image = matplotlib.image.imread(os.path.join(out, "report.png"))
    assert image.shape[0] >= 300 and image.shape[1] >= 1000 and image.std() > 0.05


def test_model_card_has_metrics_and_probes(run):
    _, out, _ = run
    report = json.load(open(os.path.join(out, "report.json")))
    card = open(os.path.join(out, "README.md")).read()
    assert card.startswith("---\n")
    assert f"{report['after']['eval_heldout_mlm_loss']:.3f}" in card
    assert f"{report['before']['eval_heldout_nsp_accuracy']:.1%}" in card
    assert "A bird sings in the [MASK]." in card and "54 documents" in card


def test_model_card_metadata_is_hub_ready(run):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    trainer, out, _ = run
    report = json.load(open(os.path.join(out, "report.json")))
    card = ModelCard.load(os.path.join(out, "README.md"))
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "fill-mask"
    assert data["language"] == ["en"] and "bert-pretrain" in data["tags"]
    name, results = model_index_to_eval_results(data["model-index"])
    assert name == "run"
    values = {(r.task_type, r.metric_type): r.metric_value for r in results}
    assert values[("fill-mask", "loss")] == report["after"]["eval_heldout_mlm_loss"]
    assert values[("text-classification", "accuracy")] == report["after"]["eval_heldout_nsp_accuracy"]
    assert {r.dataset_split for r in results} == {"validation"}
    # The training section is the run's: 4 steps of batch 8 on one process, in the precision accelerate used.
    assert report["training"]["steps"] == 4 and report["training"]["effective_batch_size"] == 8
    assert report["training"]["precision"] == trainer.accelerator.mixed_precision == trainer.args.mixed_precision
    assert report["recipe"]["bf16"] == (trainer.accelerator.mixed_precision == "bf16")
    assert "- 4 optimizer steps" in card.text and "effective batch 8 (8 per device x 1 accumulation" in card.text
    assert report["training"]["head_moments"] == "separate" and "NSP head with AdamW moments of its own" in card.text
    # on a CPU the model's dropout ran through pipeline.dropout, and under bf16 its hidden states were bf16
    assert report["training"]["dropout"] == "pipeline.dropout.CpuDropout"
    bf16 = trainer.accelerator.mixed_precision == "bf16"
    assert report["training"]["hidden_states"] == ("bfloat16" if bf16 else "float32")
    assert any(type(m).__name__ == "CpuDropout" for m in trainer.model.modules())
    assert f'from_pretrained("{out}")' in card.text


def test_last_step_is_evaluated_once(run):
    trainer, _, _ = run
    at_end = [h for h in trainer.state.log_history if h.get("step") == 4 and "eval_heldout_mlm_loss" in h]
    assert len(at_end) == 1


def test_base_model_licence_and_hub_id_from_a_local_card(tmp_path):
    from huggingface_hub import ModelCard

    from pipeline.report import base_model_card, write_model_card

    model = tmp_path / "local-bert"
    model.mkdir()
    (model / "README.md").write_text("---\nlicense: apache-2.0\nlanguage: en\n---\n# A model\n\n```python\n"
                                     "model = AutoModel.from_pretrained('someone/a-bert')\n```\n")
    assert base_model_card(str(model)) == ("someone/a-bert", "apache-2.0")
    out = tmp_path / "out"
    out.mkdir()
    report = {"recipe": {"objective": "mlm", "dataset_name": "someone/texts", "language": "de",
                         "train_file": None}, "corpus": {}, "training": {"steps": 3, "epochs": 0.5,
                                                                         "precision": "bf16"},
              "before": {"eval_mlm_loss": 5.0}, "after": {"eval_mlm_loss": 4.0}, "probes": {}, "timings": {}}
    write_model_card(str(out), base_model=str(model), report=report, model_class="BertForMaskedLM",
                     hub_model_id="me/my-bert")
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "someone/a-bert" and card.data.license == "apache-2.0"
    assert card.data.datasets == ["someone/texts"] and card.data.language == ["de"]
    assert card.data.eval_results[0].metric_value == 4.0 and card.data.model_name == "me/my-bert"
    assert 'from_pretrained("me/my-bert")' in card.text and "bf16 mixed precision" in card.text


def test_tensorboard_events_written(run):
    _, out, _ = run
    assert len(glob.glob(os.path.join(out, "runs", "*", "events.out.tfevents.*"))) == 1


def test_folder_reloads_in_three_classes(run):
    _, out, _ = run
    assert os.path.isfile(os.path.join(out, "model.safetensors"))
    assert type(BertForPreTraining.from_pretrained(out)) is BertForPreTraining
    assert type(BertForMaskedLM.from_pretrained(out)) is BertForMaskedLM
    assert type(BertModel.from_pretrained(out)) is BertModel


def test_evaluate_is_repeatable_and_matches_training(run, capsys):
    _, out, args = run
    from pipeline.evaluation import main as evaluate

    common = [a if a != args[1] else out for a in args]  # same recipe, the trained checkpoint as model
    first, second = evaluate(common), evaluate(common)

    def numbers(metrics):
        return {k: v for k, v in metrics.items() if not k.endswith(("runtime", "per_second", "preparation_time"))}

    assert numbers(first) == numbers(second) and "eval_mlm_loss" in first
    report = json.load(open(os.path.join(out, "report.json")))
    assert first["eval_mlm_loss"] == pytest.approx(report["after"]["eval_heldout_mlm_loss"], abs=1e-5)
    capsys.readouterr()
    assert cli(["evaluate", *common]) == 0
    assert "checkpoint" in capsys.readouterr().out


def test_card_lists_a_token_task_probe_as_token_classification():
    from pipeline.report import card_metadata

    score = {"mean": 0.8, "std": 0.01, "values": [0.79, 0.81]}
    probe = {"task": "tags.jsonl", "kind": "tokens", "mode": "quick", "seeds": [42, 43],
             "metrics": [["entity_f1", "entity F1"], ["accuracy", "word accuracy"]],
             "models": {"adapted": {"entity_f1": score, "accuracy": {**score, "mean": 0.9}}}}
    data = card_metadata(base_model="b", licence=None, recipe={"train_file": ["c.txt"]}, after={}, model_name="m",
                         scratch=False, task_probe=probe)
    probed = [r for r in data.eval_results if r.dataset_name == "tags.jsonl"]
    assert [(r.task_type, r.metric_type, r.metric_config, r.metric_value) for r in probed] == [
        ("token-classification", "f1", "seqeval", 0.8), ("token-classification", "accuracy", None, 0.9)]
