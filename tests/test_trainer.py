"""The Trainer subclass: exact loss means under gradient accumulation, head learning rates."""

import pytest


@pytest.mark.train
def test_logged_loss_is_the_same_with_gradient_accumulation(tmp_path):
    """Four micro-batches of 4 must log the loss of one batch of 16: true token and example means."""
    import torch
    from datasets import Dataset
    from transformers import TrainingArguments

    from pipeline.collator import DataCollatorForPreTraining, fix_eval_masks
    from pipeline.trainer import PreTrainer
    from tests.conftest import make_examples, make_model, make_tokenizer

    tokenizer = make_tokenizer()  # its own: the data must not depend on what other tests did to a shared one

    collator = DataCollatorForPreTraining(tokenizer, seed=0)
    # Fixed masks (as for evaluation) so both runs see identical inputs and labels.
    data = fix_eval_masks(Dataset.from_list(make_examples(tokenizer, 16, seed=3)), collator, seed=0)
    # Half the rows keep a single masked token, so micro-batches hold very different numbers of
    # masked tokens and a mean of micro-batch means is far from the mean over all masked tokens.
    def thin(row, index):
        masked = [i for i, label in enumerate(row["labels"]) if label != -100]
        if index % 2 and masked:
            row["labels"] = [label if i == masked[0] else -100 for i, label in enumerate(row["labels"])]
        return row

    data = data.map(thin, with_indices=True).add_column("epoch", [0] * 16)

    def first_logged(batch_size, accumulation, trainer_class=PreTrainer):
        torch.manual_seed(0)
        model = make_model(len(tokenizer))
        model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
        model.config.initializer_range = 1.0  # spread-out logits: per-token losses differ, so means of means would too
        model = type(model)(model.config)
        args = TrainingArguments(output_dir=str(tmp_path / f"ga{accumulation}"), per_device_train_batch_size=batch_size,
                                 gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=1e-3,
                                 logging_steps=1, report_to="none", save_strategy="no", use_cpu=True,
                                 disable_tqdm=True, seed=0)
        trainer = trainer_class(model=model, args=args, train_dataset=data, data_collator=collator,
                             processing_class=tokenizer)
        trainer.train()
        return next(h for h in trainer.state.log_history if "loss" in h)

    one, four = first_logged(16, 1), first_logged(4, 4)
    for key in ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy"):
        assert abs(one[key] - four[key]) < 1e-3, key
    # Stock Trainer averages micro-batch means, which is not the mean over the 16 examples.
    from transformers import Trainer

    stock_one, stock_four = first_logged(16, 1, Trainer), first_logged(4, 4, Trainer)
    assert abs(stock_one["loss"] - one["loss"]) < 1e-3
    assert abs(stock_four["loss"] - four["loss"]) > 5e-2


def test_new_heads_train_at_the_head_learning_rate(tmp_path):
    from transformers import TrainingArguments

    from pipeline.model import head_weights
    from pipeline.trainer import PreTrainer
    from tests.conftest import make_model, make_tokenizer

    model = make_model(len(make_tokenizer()))
    model.newly_initialised = ["cls.seq_relationship.weight", "cls.seq_relationship.bias",
                               "cls.predictions.transform.dense.weight"]
    model.newly_initialised.append("cls.predictions.transform.dense.bias")
    head = head_weights(model)  # a new sentence classifier, a linear probe, keeps the encoder's rate
    assert sorted(head) == ["cls.predictions.transform.dense.bias", "cls.predictions.transform.dense.weight"]
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4, weight_decay=0.01, report_to="none",
                             use_cpu=True)
    optimizer = PreTrainer(model=model, args=args, head_learning_rate=1e-3, head_weights=head).create_optimizer()
    names = {id(p): n for n, p in model.named_parameters()}
    by_lr = {}
    for group in optimizer.param_groups:
        by_lr.setdefault(group["lr"], []).extend(names[id(p)] for p in group["params"])
    assert sorted(by_lr[1e-3]) == sorted(head)
    assert sorted(by_lr[1e-3] + by_lr[1e-4]) == sorted(names.values())  # every weight once
    # Weight decay still spares biases and LayerNorms among the head's weights.
    assert {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.0 and g["lr"] == 1e-3
            for p in g["params"]} == {"cls.predictions.transform.dense.bias"}


@pytest.mark.train
@pytest.mark.parametrize("accumulation", [1, 4])
def test_separate_head_moments_step_is_each_heads_adamw_step_added(tmp_path, accumulation):
    """With separate head moments, one optimizer step moves every weight by MLM's AdamW step plus the sentence
    loss's own AdamW step, computed here by hand from the two losses' gradients over the whole batch of 16."""
    import copy

    import torch
    from datasets import Dataset
    from transformers import TrainingArguments

    from pipeline.collator import DataCollatorForPreTraining, fix_eval_masks
    from pipeline.heads import HeadSums
    from pipeline.trainer import PreTrainer
    from tests.conftest import make_examples, make_model, make_tokenizer

    tokenizer = make_tokenizer()
    collator = DataCollatorForPreTraining(tokenizer, seed=0)
    data = fix_eval_masks(Dataset.from_list(make_examples(tokenizer, 16, seed=3)), collator, seed=0)
    data = data.add_column("epoch", [0] * 16)
    torch.manual_seed(0)
    model = make_model(len(tokenizer))
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    model = type(model)(model.config)
    start = copy.deepcopy(model)

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=16 // accumulation,
                             gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=1e-3,
                             weight_decay=0.01, max_grad_norm=0.0, warmup_steps=0, lr_scheduler_type="constant",
                             logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
                             seed=0)
    trainer = PreTrainer(model=model, args=args, train_dataset=data, data_collator=collator,
                         processing_class=tokenizer, separate_head_moments=True)
    trainer.train()

    # By hand: the two losses over all 16 examples, their gradients, an AdamW step for each.
    batch = collator([{k: v for k, v in row.items() if k != "epoch"} for row in data])
    start.train()
    sums = HeadSums.from_tensor(start(**batch).head_sums)
    params = [p for p in start.parameters()]
    mlm = torch.autograd.grad(sums.mlm_loss_sum / sums.mlm_count, params, retain_graph=True, allow_unused=True)
    sentence = torch.autograd.grad(sums.sentence_loss_sum / sums.sentence_count, params, allow_unused=True)
    decay = set(trainer.get_decay_parameter_names(start))
    names = [n for n, _ in start.named_parameters()]
    for name, param, g_mlm, g_sentence in zip(names, params, mlm, sentence):
        expected = param.detach().clone()
        # MLM's step carries the weight decay of every weight; the sentence step only moves what it reached
        g_mlm = torch.zeros_like(param) if g_mlm is None else g_mlm
        for grad, weight_decay in ((g_mlm, 0.01 if name in decay else 0.0), (g_sentence, 0.0)):
            if grad is not None:
                alone = torch.nn.Parameter(param.detach().clone())
                alone.grad = grad
                torch.optim.AdamW([alone], lr=1e-3, weight_decay=weight_decay).step()
                expected += alone.detach() - param.detach()
        torch.testing.assert_close(dict(trainer.model.named_parameters())[name].detach(), expected,
                                   rtol=1e-4, atol=1e-6, msg=name)
