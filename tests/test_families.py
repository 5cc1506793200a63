"""Every family of pipeline/families.py on a tiny model of its own with a tokenizer trained in-process (WordPiece,
byte-level BPE or Unigram): the sparse heads give the stock class's numbers, the templates and masks follow the
tokenizer, and the real `train` entry point trains each objective and saves a folder the stock Auto class loads."""

import json
import os

import pytest
import torch
import transformers
from transformers import AutoModelForMaskedLM, AutoModelForPreTraining, AutoTokenizer

from pipeline.collator import DataCollatorForPreTraining
from pipeline.errors import UsageError
from pipeline.families import FAMILIES, family_of
from pipeline.features import A, B, special_template
from pipeline.model import describe_new_heads, head_weights, load_model
from pipeline.train import main
from tests.conftest import FAMILY_TOKENIZERS, FAST_TRAIN, domain_documents, make_family_model

FAMILY_TYPES = sorted(FAMILIES)
# Each family's own objectives (BERT's three are in test_train.py; CamemBERT is XLM-RoBERTa's shape).
RUNS = [("albert", "sop"), ("albert", "mlm"), ("megatron-bert", "nsp"), ("ernie", "nsp"), ("roberta", "mlm"),
        ("xlm-roberta", "mlm"), ("modernbert", "mlm"), ("deberta-v2", "mlm"), ("distilbert", "mlm"), ("electra", "mlm")]


def test_every_family_has_a_tokenizer_style_in_the_tests():
    assert set(FAMILY_TOKENIZERS) == set(FAMILIES)


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_a_row_names_what_the_installed_transformers_has(model_type):
    family = FAMILIES[model_type]
    for name in filter(None, (family.masked_lm, family.pretraining)):
        stock = getattr(transformers, name)
        assert stock.config_class.model_type == model_type


@pytest.mark.parametrize("model_type,sentence_head", [(t, False) for t in FAMILY_TYPES] +
                         [(t, True) for t in FAMILY_TYPES if FAMILIES[t].pretraining])
def test_sparse_heads_give_the_stock_numbers(model_type, sentence_head, family_model_dir):
    """Loss and logits at the masked positions equal the stock class's, for its masked-LM and pre-training classes."""
    family = FAMILIES[model_type]
    tokenizer = AutoTokenizer.from_pretrained(family_model_dir(model_type))
    ours = load_model(family_model_dir(model_type), objective="nsp" if sentence_head else "mlm").eval()
    assert ours._no_split_modules == {family.layer}  # FSDP's wrapping unit, a class the model has
    assert any(type(module).__name__ == family.layer for module in ours.modules())
    stock = getattr(transformers, ours.stock_class)(ours.config).eval()
    stock.load_state_dict(ours.state_dict())
    encoded = tokenizer(["The river flows to the sea.", "A bird sings in the morning light."],
                        ["Stone and water.", "Clouds over the valley!"], padding=True, return_tensors="pt")
    labels = torch.full_like(encoded["input_ids"], -100)
    labels[:, 2::3] = encoded["input_ids"][:, 2::3]
    labels[encoded["attention_mask"] == 0] = -100
    sentence = {family.sentence_label: torch.tensor([0, 1])} if sentence_head else {}
    with torch.no_grad():
        got = ours(**encoded, labels=labels, **sentence)
        want = stock(**{k: v for k, v in encoded.items() if k != "token_type_ids" or family.token_type_ids},
                     labels=labels, **sentence)
    want_logits = want.prediction_logits if sentence_head else want.logits
    assert torch.allclose(got.loss, want.loss, atol=1e-5)
    mlm_logits = got.prediction_logits if sentence_head else got.logits
    if model_type == "modernbert" and want_logits.dim() == 2:  # its own sparse_prediction, when configured
        assert torch.allclose(mlm_logits, want_logits, atol=1e-5)
    else:
        assert torch.allclose(mlm_logits, want_logits[labels != -100], atol=1e-5)
    if sentence_head:
        want_sentence = want.sop_logits if model_type == "albert" else want.seq_relationship_logits
        assert torch.allclose(got.seq_relationship_logits, want_sentence, atol=1e-5)


@pytest.mark.parametrize("model_type", [t for t in FAMILY_TYPES if not FAMILIES[t].pretraining])
def test_a_family_without_a_sentence_head_is_refused_nsp_and_sop_in_one_sentence(model_type, family_model_dir):
    for objective in ("nsp", "sop"):
        with pytest.raises(UsageError, match=rf"is an? {FAMILIES[model_type].name} \({model_type}\) model and has no "
                                             rf"next-sentence or sentence-order head for --objective {objective}; it "
                                             r"can do --objective mlm\.$"):
            load_model(family_model_dir(model_type), objective=objective)
    with pytest.raises(UsageError, match=r"is a gpt2 model, which this tool cannot pre-train; give a checkpoint of one "
                                         r"of: .*albert.*roberta"):
        family_of("gpt2", "some/gpt2", "mlm")


def test_new_heads_are_named_and_set_apart_for_each_family(tmp_path):
    """A RoBERTa saved without its MLM head, an ALBERT without its SOP head: the head is new, the run says so."""
    from tests.conftest import train_tokenizer

    tokenizer = train_tokenizer("bpe", ("<s>", "</s>", "<pad>", "<unk>", "<mask>"), False)
    base = make_family_model("roberta", tokenizer).roberta
    base.save_pretrained(tmp_path / "roberta")
    model = load_model(str(tmp_path / "roberta"), objective="mlm")
    assert describe_new_heads(model, "r").endswith("newly initialised pre-training head parts: lm_head")
    assert head_weights(model) and all(name.startswith("lm_head.") for name in head_weights(model))
    albert = make_family_model("albert", train_tokenizer("unigram", ("[CLS]", "[SEP]", "<pad>", "<unk>", "[MASK]")))
    transformers.AlbertForMaskedLM(albert.config).save_pretrained(tmp_path / "albert")
    model = load_model(str(tmp_path / "albert"), objective="sop")
    assert "sop_classifier" in describe_new_heads(model, "a")
    assert head_weights(model) == []  # the sentence classifier (a linear probe) keeps the encoder's rate


@pytest.mark.parametrize("model_type", ["bert", "roberta", "albert", "xlm-roberta", "modernbert", "distilbert"])
def test_the_template_is_the_tokenizers_own(model_type, family_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(family_model_dir(model_type))
    template = special_template(tokenizer)
    a, b = (tokenizer(word, add_special_tokens=False)["input_ids"] for word in ("river", "stone"))
    expected = tokenizer.backend_tokenizer.encode("river", "stone")
    built = [x for item in template.pair for x in (a if item == A else b if item == B else [item])]
    assert built == expected.ids
    types = [t for item, t in zip(template.pair, template.pair_types)
             for _ in (a if item == A else b if item == B else [item])]
    assert types == expected.type_ids
    if model_type in ("roberta", "xlm-roberta"):
        assert template.num_special(True) == 4


def _word_ids(tokenizer, texts):
    encoded = tokenizer(texts)
    return encoded["input_ids"], [encoded.word_ids(i) for i in range(len(texts))]


@pytest.mark.parametrize("model_type", ["bert", "roberta", "albert", "deberta-v2", "modernbert"])
def test_masks_never_touch_special_tokens_and_words_stay_whole(model_type, family_model_dir):
    """Every tokenizer kind: no special token is masked, and with whole_word_mask each word the tokenizer's own
    pre-tokenizer sees is masked whole or not at all, most words being several pieces here."""
    tokenizer = AutoTokenizer.from_pretrained(family_model_dir(model_type))
    texts = domain_documents(150, seed=5)  # words the tiny vocabularies split
    ids, words = _word_ids(tokenizer, texts)
    special = torch.tensor(tokenizer.all_special_ids)
    for whole_word_mask in (False, True):
        collator = DataCollatorForPreTraining(tokenizer, whole_word_mask=whole_word_mask, seed=0)
        batch = collator([{"input_ids": row} for row in ids])
        masked = batch["labels"] != -100
        assert masked.any() and not torch.isin(batch["labels"][masked], special).any()
        assert (batch["attention_mask"][masked] == 1).all()
        real = sum(len(row) for row in ids) - len(ids) * special_template(tokenizer).num_special(False)
        assert abs(masked.sum().item() / real - 0.15) < 0.03
        if not whole_word_mask:
            continue
        several = 0
        for row, word_ids in zip(masked, words):
            spans = {}
            for position, word in enumerate(word_ids):
                if word is not None:
                    spans.setdefault(word, []).append(bool(row[position]))
            assert all(all(span) or not any(span) for span in spans.values())
            several += sum(len(span) > 1 and all(span) for span in spans.values())
        assert several > 50


def test_positions_a_family_reserves_count_against_max_seq_length(family_model_dir):
    from pipeline.model import check_model_fits

    config = transformers.AutoConfig.from_pretrained(family_model_dir("roberta"))  # 130 position embeddings
    check_model_fits(config.vocab_size, config, 128)
    with pytest.raises(UsageError, match=r"above the model's 130 position embeddings \(2 of them reserved, as "
                                         r"RoBERTa does\)"):
        check_model_fits(config.vocab_size, config, 129)


@pytest.mark.train
@pytest.mark.parametrize("model_type,objective", RUNS, ids=[f"{t}-{o}" for t, o in RUNS])
def test_each_family_trains_and_reloads_with_the_stock_auto_class(model_type, objective, family_model_dir, corpus_file,
                                                                  tmp_path, capsys):
    family = FAMILIES[model_type]
    out = str(tmp_path / "run")
    trainer = main(["--model_name_or_path", family_model_dir(model_type), "--train_file", corpus_file,
                    "--output_dir", out, "--objective", objective, "--max_seq_length", "48", "--max_steps", "2",
                    "--whole_word_mask", "true", "--probes", "The [MASK] flows to the sea.", *FAST_TRAIN],
                   return_trainer=True)
    printed = capsys.readouterr().out
    assert trainer.state.global_step == 2
    head = {"nsp": "NSP accuracy", "sop": "SOP accuracy", "mlm": "MLM accuracy"}[objective]
    assert head in printed and "MLM accuracy" in printed
    evals = [h for h in trainer.state.log_history if "eval_mlm_loss" in h]
    assert len(evals) == 2 and (objective == "mlm" or f"eval_{objective}_accuracy" in evals[0])
    stock = family.masked_lm if objective == "mlm" else family.pretraining
    assert json.load(open(os.path.join(out, "config.json")))["architectures"] == [stock]
    auto = AutoModelForMaskedLM if objective == "mlm" else AutoModelForPreTraining
    reloaded = auto.from_pretrained(out)
    assert type(reloaded).__name__ == stock
    trained = trainer.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in reloaded.state_dict().items())
    card = open(os.path.join(out, "README.md")).read()
    a_family = family.a_name[0].upper() + family.a_name[1:]  # "A RoBERTa", "An ALBERT"
    assert f"{a_family} (`{family_model_dir(model_type)}`) further pre-trained" in card
    report = json.load(open(os.path.join(out, "report.json")))
    assert len(report["probes"]["The [MASK] flows to the sea."]["after"]) == 5


@pytest.mark.slow
def test_two_processes_train_an_albert_on_sentence_order(family_model_dir, tmp_path, torchrun):
    """ALBERT's own label name (sentence_order_label) through two processes: per-head means over both ranks."""
    from pipeline.heads import HeadSums
    from tests.conftest import make_documents

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_documents(80, seed=3)) + "\n")
    out = tmp_path / "run"
    ranks = torchrun("--model_name_or_path", family_model_dir("albert"), "--train_file", str(corpus), "--output_dir",
                     str(out), "--objective", "sop", "--max_seq_length", "48", "--per_device_train_batch_size", "4",
                     "--max_steps", "4", "--logging_steps", "2", "--save_strategy", "no", "--report_to", "none",
                     "--disable_tqdm", "true")
    assert ranks[0]["train_hash"] == ranks[1]["train_hash"] and not set(ranks[0]["seen"]) & set(ranks[1]["seen"])
    logged = [h for h in ranks[0]["log_history"] if "sop_accuracy" in h]
    assert [h["step"] for h in logged] == [2, 4]
    for entry, s0, s1 in zip(logged, ranks[0]["local_sums"], ranks[1]["local_sums"]):
        total = HeadSums(*(a + b for a, b in zip(s0["sums"], s1["sums"])))
        assert entry["sop_accuracy"] == pytest.approx(total.sentence_correct / total.sentence_count, abs=1e-4)
        assert total.sentence_count == 16  # 2 steps x 4 examples x 2 ranks
    assert type(AutoModelForPreTraining.from_pretrained(out)).__name__ == "AlbertForPreTraining"


@pytest.mark.train
def test_a_roberta_run_resumed_from_a_checkpoint_ends_as_an_unbroken_one(family_model_dir, corpus_file, tmp_path):
    import shutil

    from safetensors.torch import load_file

    args = ["--model_name_or_path", family_model_dir("roberta"), "--train_file", corpus_file, "--objective", "mlm",
            "--max_seq_length", "48", "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2",
            "--learning_rate", "1.0e-3", *[a for a in FAST_TRAIN if a not in ("--save_strategy", "no")]]
    main([*args, "--output_dir", str(tmp_path / "whole")])
    shutil.copytree(tmp_path / "whole", tmp_path / "broken")
    shutil.rmtree(tmp_path / "broken" / "checkpoint-4")  # as if killed after checkpoint-2
    os.remove(tmp_path / "broken" / "model.safetensors")
    main([*args, "--output_dir", str(tmp_path / "broken"), "--resume_from_checkpoint", "latest"])
    whole, broken = (load_file(tmp_path / name / "model.safetensors") for name in ("whole", "broken"))
    assert whole.keys() == broken.keys() and all(torch.allclose(whole[k], broken[k], atol=1e-6) for k in whole)
