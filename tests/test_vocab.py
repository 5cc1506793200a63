"""Fertility, domain words, vocabulary extension and from-scratch tokenizers, on the tiny BERT
(pipeline/fertility.py, pipeline/vocabulary.py, pipeline/wordpiece.py)."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertForPreTraining

from pipeline.__main__ import main as cli
from pipeline.cache import cache_root, tokenizer_fingerprint
from pipeline.errors import UsageError
from pipeline.fertility import count_words, domain_words, fertility
from pipeline.train import main
from pipeline.vocabulary import extend_tokenizer, extend_vocabulary, read_domain_words
from pipeline.wordpiece import train_wordpiece
from tests.conftest import DOMAIN, FAST_TRAIN, WORDS, domain_documents, make_model, make_tokenizer, make_vocab


def test_count_words_and_fertility_are_exact(tokenizer):
    counts = count_words(tokenizer, ["Moudening rivers, moudening.", "River 42 Mouden!"])
    assert counts == Counter({"moudening": 2, "rivers": 1, ",": 1, ".": 1, "river": 1, "42": 1, "mouden": 1, "!": 1})
    fit = fertility(tokenizer, counts, top_k=5)
    # moudening: mou ##den ##ing (twice), rivers: river ##s, mouden: mou ##den, 42: [UNK], the rest one piece each
    assert (fit.words, fit.distinct_words, fit.pieces, fit.unknown, fit.split_3plus) == (9, 8, 15, 1, 2)
    assert fit.pieces_per_word == pytest.approx(15 / 9) and fit.unk_rate == pytest.approx(1 / 9)
    assert fit.most_split == [{"word": "moudening", "count": 2, "pieces": ["mou", "##den", "##ing"]}]


def test_domain_words_rank_by_pieces_saved(tokenizer):
    counts = Counter({"mouden": 5, "moudening": 3, "rivne": 5, "river": 50, "42": 9, "windsong": 9, "forning": 1})
    # mouden/rivne save 5 x 1 each, moudening 3 x 2; river is one piece, 42 has no letter, windsong is [UNK],
    # forning is seen once.
    assert domain_words(tokenizer, counts, 10) == ["moudening", "mouden", "rivne"]
    assert domain_words(tokenizer, counts, 2) == ["moudening", "mouden"]
    assert domain_words(tokenizer, counts, 10, min_count=1)[-1] == "forning"


def test_new_tokens_are_one_piece_filling_unused_slots_then_appended(tmp_path):
    tokenizer = make_tokenizer(make_vocab(unused=2))
    slots = [tokenizer.convert_tokens_to_ids(f"[unused{i}]") for i in range(2)]
    new, added = extend_tokenizer(tokenizer, ["moudening", "mouden", "rivne", "river"])
    assert [(t.token, t.id, t.slot) for t in added] == [
        ("moudening", slots[0], "[unused0]"), ("mouden", slots[1], "[unused1]"), ("rivne", len(tokenizer), None)]
    assert added[0].pieces == ["mou", "##den", "##ing"]
    assert added[0].piece_ids == tokenizer.convert_tokens_to_ids(["mou", "##den", "##ing"])
    assert type(new) is type(tokenizer) and len(new) == len(tokenizer) + 1
    assert new.all_special_ids == tokenizer.all_special_ids and "[unused0]" not in new.get_vocab()
    text = "Moudening, moudening. Rivne river moudenings mouden!"
    expected = ["moudening", ",", "moudening", ".", "rivne", "river", "moudening", "##s", "mouden", "!"]
    assert new.tokenize(text) == expected
    assert new(text)["input_ids"][:3] == [new.cls_token_id, slots[0], new.convert_tokens_to_ids(",")]
    new.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).tokenize(text) == expected


def test_new_embeddings_are_the_mean_of_old_pieces():
    torch.manual_seed(0)
    tokenizer = make_tokenizer(make_vocab(unused=2))
    model = make_model(len(tokenizer))
    with torch.no_grad():
        model.cls.predictions.bias.normal_()
    old_rows = model.get_input_embeddings().weight.detach().clone()
    old_bias = model.cls.predictions.bias.detach().clone()
    new, model, added = extend_vocabulary(tokenizer, model, ["moudening", "mouden", "rivne"])
    rows, bias = model.get_input_embeddings().weight, model.cls.predictions.bias
    assert rows.shape[0] == len(new) == model.config.vocab_size == len(tokenizer) + 1
    for token in added:
        assert torch.allclose(rows[token.id], old_rows[token.piece_ids].mean(0))
        assert torch.allclose(bias[token.id], old_bias[token.piece_ids].mean(0))
    untouched = [i for i in range(len(tokenizer)) if i not in {t.id for t in added}]
    assert torch.equal(rows[untouched], old_rows[untouched]) and torch.equal(bias[untouched], old_bias[untouched])
    assert model.cls.predictions.decoder.weight is rows and model.cls.predictions.decoder.bias is bias


def test_fertility_drops_on_the_corpus(tokenizer):
    documents = domain_documents(40)
    counts = count_words(tokenizer, documents)
    words = domain_words(tokenizer, counts, 8)
    assert sorted(words) == sorted(DOMAIN)
    new, _ = extend_tokenizer(tokenizer, words)
    before, after = fertility(tokenizer, counts), fertility(new, counts)
    assert after.words == before.words
    assert after.pieces == before.pieces - sum(counts[w] * (len(tokenizer.tokenize(w)) - 1) for w in DOMAIN)
    assert after.pieces_per_word < before.pieces_per_word and after.split_3plus == 0 < before.split_3plus


def test_domain_tokens_file_is_normalized_and_checked(tokenizer, tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("Moudening\n\n  rivne \n", encoding="utf-8")
    assert read_domain_words(str(path), tokenizer) == ["moudening", "rivne"]
    path.write_text("mou-den\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"'mou-den' in .* is 3 words to this tokenizer \(mou - den\)"):
        read_domain_words(str(path), tokenizer)


@pytest.mark.train
def test_train_with_domain_tokens_stays_tied_and_reloads(tiny_model_dir, domain_corpus, tmp_path, capsys):
    out = str(tmp_path / "run")
    trainer = main(["--model_name_or_path", tiny_model_dir, "--train_file", domain_corpus, "--output_dir", out,
                    "--max_seq_length", "48", "--max_steps", "3", "--learning_rate", "1.0e-3",
                    "--validation_split_percentage", "10", "--add_domain_tokens", "8", *FAST_TRAIN], return_trainer=True)
    printed = capsys.readouterr().out
    assert "word-pieces per word" in printed and "8 domain tokens added (5 into [unused] slots, 3 appended)" in printed
    assert trainer.state.global_step == 3
    trained = trainer.model
    assert trained.cls.predictions.decoder.weight is trained.bert.embeddings.word_embeddings.weight

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = BertForPreTraining.from_pretrained(out)
    assert len(tokenizer) == model.config.vocab_size == len(make_tokenizer()) + 3
    assert all(tokenizer.tokenize(w) == [w] for w in DOMAIN)
    embeddings = model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.weight.data_ptr() == embeddings.data_ptr()
    assert torch.equal(embeddings, trained.bert.embeddings.word_embeddings.weight.detach())

    report = json.loads(Path(out, "report.json").read_text())["vocabulary"]
    assert (report["added"], report["into_unused"], report["appended"]) == (8, 5, 3)
    assert report["after"]["pieces_per_word"] < report["before"]["pieces_per_word"]
    assert "## Vocabulary" in Path(out, "README.md").read_text()
    # The prepared dataset was built with the extended tokenizer, so it is not the base tokenizer's cache.
    path = json.loads(Path(out, "report.json").read_text())["prepared"]["path"]
    prepared = json.loads(Path(path, "prepare.json").read_text())["config"]["tokenizer"]
    assert prepared == tokenizer_fingerprint(tokenizer) != tokenizer_fingerprint(make_tokenizer())


def test_train_wordpiece_is_a_bert_tokenizer(tmp_path):
    tokenizer = train_wordpiece(domain_documents(30), 200, lowercase=True)
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert 100 < len(tokenizer) <= 200
    assert tokenizer.tokenize("River MOUDENING.") == ["river", "moudening", "."]
    ids = tokenizer("river", "stone")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids.count(tokenizer.sep_token_id) == 2


@pytest.mark.train
def test_from_scratch_tokenizer_and_model_train_and_reload(tiny_model_dir, domain_corpus, config_dir, tmp_path,
                                                           capsys):
    out = str(tmp_path / "run")
    args = ["--model_name_or_path", tiny_model_dir, "--train_file", domain_corpus, "--output_dir", out,
            "--max_seq_length", "48", "--tokenizer_from_scratch", "150", "--config_name", str(config_dir)]
    trainer = main([*args, "--max_steps", "2", *FAST_TRAIN], return_trainer=True)
    assert "trained from scratch" in capsys.readouterr().out
    assert trainer.state.global_step == 2

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = BertForPreTraining.from_pretrained(out)
    assert len(tokenizer) == model.config.vocab_size <= 150 and model.config.hidden_size == 32
    ids = tokenizer("Moudening rivers.")["input_ids"]
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids, skip_special_tokens=True) == "moudening rivers."
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    # WordPiece training is not repeatable, so `prepare` must load the run's tokenizer (kept in the cache, not in
    # output_dir) and reuse its dataset.
    assert not os.path.exists(os.path.join(out, "scratch-tokenizer"))
    scratch = [p for p in cache_root().iterdir() if p.name.startswith("tokenizer-")]
    assert len(scratch) == 1 and AutoTokenizer.from_pretrained(scratch[0]).get_vocab() == tokenizer.get_vocab()
    path = json.loads(Path(out, "report.json").read_text())["prepared"]["path"]
    stamp = os.path.getmtime(os.path.join(path, "prepare.json"))
    assert cli(["prepare", *args]) == 0
    assert os.path.getmtime(os.path.join(path, "prepare.json")) == stamp


def test_vocab_command_prints_the_fit_and_the_words_it_would_add(tiny_model_dir, domain_corpus, tmp_path, capsys):
    args = ["--model_name_or_path", tiny_model_dir, "--train_file", domain_corpus, "--output_dir", str(tmp_path)]
    assert cli(["vocab", *args, "--vocab_top_k", "2"]) == 0
    printed = capsys.readouterr().out
    assert "word-pieces per word" in printed and "[UNK] rate" in printed
    top = printed[printed.index("Most frequent words in 3+ pieces"):].splitlines()[2:]
    assert [line.split()[1] for line in top] == ["moudening", "valdening"]
    assert top[0].split()[2:] == ["mou", "##den", "##ing"]
    assert cli(["vocab", *args, "--add_domain_tokens", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Domain tokens to add: 2 (2 into [unused] slots, 0 appended)" in printed
    assert "moudening (mou ##den ##ing), valdening (val ##den ##ing)" in printed
    assert not os.path.exists(os.path.join(tmp_path, "model.safetensors"))


@pytest.mark.parametrize("flags, message", [
    (["--tokenizer_from_scratch", "500"], "tokenizer_from_scratch needs config_name"),
    (["--config_name", "x", "--tokenizer_from_scratch", "500", "--add_domain_tokens", "5"],
     "add_domain_tokens and domain_tokens_file do not apply"),
    (["--config_name", "x"], "config_name builds a BERT from scratch and needs tokenizer_from_scratch"),
    (["--add_domain_tokens", "-1"], "add_domain_tokens is -1; give 0 or more"),
])
def test_bad_vocabulary_flags_are_one_sentence_and_exit_2(flags, message, tmp_path, capsys):
    assert cli(["vocab", "--output_dir", str(tmp_path), "--train_file", "x.txt", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bert-pretrain vocab: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_words_are_counted_like_the_tokenizer_splits_them(tokenizer):
    text = " ".join(WORDS) + ". " + "Stone,water!stone"
    counts = count_words(tokenizer, [text])
    assert counts["stone"] == 3 and counts["water"] == 2 and counts[","] == 1


@pytest.mark.parametrize("kind,model_type", [("bpe", "roberta"), ("unigram", "albert")])
def test_domain_tokens_in_byte_level_bpe_and_sentencepiece(kind, model_type, tmp_path):
    """A byte-level BPE (merges that build the word) and a Unigram (a piece scoring just above its old split):
    each word becomes one token in running text, fertility drops, embeddings start at the mean of the old pieces."""
    from tests.conftest import FAMILY_TOKENIZERS, make_family_model, train_tokenizer

    _, style, token_types = FAMILY_TOKENIZERS[model_type]
    tokenizer = train_tokenizer(kind, style, token_types)
    marker = "Ġ" if kind == "bpe" else "▁"
    path = tmp_path / "words.txt"
    path.write_text("\n".join(DOMAIN) + "\n", encoding="utf-8")
    words = read_domain_words(str(path), tokenizer)
    assert words == [marker + w for w in DOMAIN]  # as the words read mid-sentence
    counts = count_words(tokenizer, domain_documents(40))
    assert set(words) <= set(counts)
    assert all(w.startswith(marker) and w[1:].isalpha() for w in domain_words(tokenizer, counts, 20))  # no "▁river."
    torch.manual_seed(0)
    model = make_family_model(model_type, tokenizer)
    old_rows = model.get_input_embeddings().weight.detach().clone()
    new, model, added = extend_vocabulary(tokenizer, model, words)
    assert {t.token for t in added} >= set(words) and len(new) == len(tokenizer) + len(added)
    assert all(t.id >= len(tokenizer) for t in added)
    text = "The moudening river, mouden stone, summerly rivne!"
    for tok in (new, AutoTokenizer.from_pretrained(new.save_pretrained(tmp_path / "tok") and tmp_path / "tok")):
        assert {marker + w for w in ("moudening", "mouden", "summerly", "rivne")} <= set(tok.tokenize(text))
    before, after = fertility(tokenizer, counts), fertility(new, counts)
    assert after.words == before.words and after.pieces < before.pieces
    rows = model.get_input_embeddings().weight
    assert rows.shape[0] == len(new) == model.config.vocab_size
    for token in added:
        assert torch.allclose(rows[token.id], old_rows[token.piece_ids].mean(0))
        assert [t.value for t in new.backend_tokenizer.model.tokenize(token.token)] == [token.token]
    if kind == "bpe":  # the prefixes the merges build are tokens too, each a word start
        assert {t.token for t in added} - set(words) and all(t.token.startswith(marker) for t in added)


@pytest.mark.train
@pytest.mark.parametrize("model_type", ["roberta", "albert"])
def test_train_a_bpe_or_sentencepiece_model_with_domain_tokens(model_type, family_model_dir, domain_corpus, tmp_path,
                                                               capsys):
    from transformers import AutoModelForMaskedLM

    out = str(tmp_path / "run")
    trainer = main(["--model_name_or_path", family_model_dir(model_type), "--train_file", domain_corpus,
                    "--output_dir", out, "--objective", "mlm", "--max_seq_length", "48", "--max_steps", "2",
                    "--add_domain_tokens", "4", "--whole_word_mask", "true", *FAST_TRAIN], return_trainer=True)
    assert "word-pieces per word" in capsys.readouterr().out and trainer.state.global_step == 2
    report = json.loads(Path(out, "report.json").read_text())["vocabulary"]
    assert report["added"] >= 4 and report["after"]["pieces_per_word"] < report["before"]["pieces_per_word"]
    tokenizer, model = AutoTokenizer.from_pretrained(out), AutoModelForMaskedLM.from_pretrained(out)
    assert len(tokenizer) == model.config.vocab_size == report["vocab_size"]
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
