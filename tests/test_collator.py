import random

import torch
from datasets import Dataset

from pipeline.collator import DataCollatorForPreTraining, fix_eval_masks
from tests.conftest import make_examples, make_tokenizer, make_vocab


def test_pads_to_multiple_of_8_and_masks_only_real_tokens(tokenizer):
    collator = DataCollatorForPreTraining(tokenizer, seed=0)
    batch = collator(make_examples(tokenizer, 64))
    assert batch["input_ids"].shape[1] % 8 == 0
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "next_sentence_label", "labels"}
    original = batch["labels"]
    masked = original != -100
    assert masked.any()
    special = torch.tensor(tokenizer.all_special_ids)
    assert not torch.isin(original[masked], special).any()
    assert (batch["attention_mask"][masked] == 1).all()


def test_mask_rate_and_replacement_shares_over_many_tokens(tokenizer):
    collator = DataCollatorForPreTraining(tokenizer, seed=1)
    exs = make_examples(tokenizer, 1000, seed=1)
    batch = collator(exs)
    ids = tokenizer.pad([{"input_ids": e["input_ids"]} for e in exs], pad_to_multiple_of=8,
                        return_tensors="pt")["input_ids"]
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    masked = batch["labels"] != -100
    real = (~special).sum().item()
    assert real > 10_000
    assert abs(masked.sum().item() / real - 0.15) < 0.01
    assert (batch["labels"][masked] == ids[masked]).all()
    new = batch["input_ids"][masked]
    mask_share = (new == tokenizer.mask_token_id).float().mean().item()
    kept_share = (new == ids[masked]).float().mean().item()
    assert abs(mask_share - 0.8) < 0.02 and abs(kept_share - 0.1) < 0.02
    assert (batch["input_ids"][~masked] == ids[~masked]).all()
    replaced = new[(new != tokenizer.mask_token_id) & (new != ids[masked])]
    unused = [i for t, i in tokenizer.get_vocab().items() if t.startswith("[unused")]
    assert not torch.isin(replaced, torch.tensor(tokenizer.all_special_ids + unused)).any()


def test_unusual_special_ids():
    vocab = make_vocab(specials=["[MASK]", "[SEP]", "[CLS]", "[UNK]", "[PAD]"])
    tokenizer = make_tokenizer(vocab)
    assert tokenizer.pad_token_id == 4 and tokenizer.cls_token_id == 2
    batch = DataCollatorForPreTraining(tokenizer, seed=0)(make_examples(tokenizer, 200))
    masked = batch["labels"] != -100
    assert not torch.isin(batch["labels"][masked], torch.tensor([0, 1, 2, 3, 4])).any()
    assert (batch["input_ids"][batch["attention_mask"] == 0] == 4).all()


def test_masks_are_dynamic_and_fixed_eval_masks_are_not(tokenizer):
    from datasets import Dataset

    collator = DataCollatorForPreTraining(tokenizer, seed=0)
    exs = make_examples(tokenizer, 32)
    # Same seed, epoch and batch: same masks (a resumed run masks as an unbroken one) ...
    assert torch.equal(collator(exs)["labels"], collator(exs)["labels"])
    # ... a new epoch masks afresh.
    first = collator(exs)["labels"]
    collator.epoch = 1
    assert not torch.equal(first, collator(exs)["labels"])

    dataset = Dataset.from_list(exs)
    fixed_a = fix_eval_masks(dataset, collator, seed=5)
    fixed_b = fix_eval_masks(dataset, DataCollatorForPreTraining(tokenizer, seed=99), seed=5)
    assert fixed_a["labels"][:] == fixed_b["labels"][:]
    batch_1, batch_2 = collator(list(fixed_a)), collator(list(fixed_a))
    assert torch.equal(batch_1["labels"], batch_2["labels"]) and torch.equal(batch_1["input_ids"], batch_2["input_ids"])
    assert (batch_1["labels"][batch_1["attention_mask"] == 0] == -100).all()
    assert (batch_1["labels"] != -100).any()


def word_spans(tokenizer, ids):
    """(start, end) of every word: a piece and the ## pieces after it."""
    tokens = tokenizer.convert_ids_to_tokens(ids)
    spans, start = [], None
    for i, token in enumerate(tokens + ["[SEP]"]):
        if start is not None and not token.startswith("##"):
            spans.append((start, i))
            start = None
        if token not in tokenizer.all_special_tokens and not token.startswith("##") and i < len(tokens):
            start = i
    return spans


def piecey_examples(tokenizer, n, seed):
    """Words that split into several pieces (prefix + ##suffix), so whole-word masking has work to do."""
    rng = random.Random(seed)
    words = sorted(t for t in tokenizer.get_vocab() if t.isalpha() and len(t) > 3)
    out = []
    for _ in range(n):
        text = " ".join(rng.choice(words) + rng.choice(["", "s", "ing", "ed"]) for _ in range(rng.randint(5, 30)))
        out.append({"input_ids": tokenizer(text)["input_ids"]})
    return out


def test_whole_word_masking_keeps_words_whole_and_80_10_10(tokenizer):
    collator = DataCollatorForPreTraining(tokenizer, whole_word_mask=True, seed=0)
    exs = piecey_examples(tokenizer, 800, seed=2)
    batch = collator(exs)
    masked = batch["labels"] != -100
    real = sum(len(e["input_ids"]) - 2 for e in exs)
    assert real > 10_000 and abs(masked.sum().item() / real - 0.15) < 0.015
    multi = 0
    for row, e in zip(masked, exs):
        for start, end in word_spans(tokenizer, e["input_ids"]):
            span = row[start:end]
            assert span.all() or not span.any()
            multi += bool(end - start > 1 and span.all())
    assert multi > 100
    ids = tokenizer.pad(exs, pad_to_multiple_of=8, return_tensors="pt")["input_ids"]
    new = batch["input_ids"][masked]
    assert abs((new == tokenizer.mask_token_id).float().mean().item() - 0.8) < 0.02
    assert abs((new == ids[masked]).float().mean().item() - 0.1) < 0.02


def test_exact_count_is_round_n_p_capped(tokenizer):
    exs = make_examples(tokenizer, 300, seed=4)
    batch = DataCollatorForPreTraining(tokenizer, mask_count="exact", max_predictions_per_seq=5, seed=0)(exs)
    for row, e in zip(batch["labels"], exs):
        n = len(e["input_ids"]) - 3
        assert (row != -100).sum().item() == min(max(1, round(n * 0.15)), 5)
    uncapped = DataCollatorForPreTraining(tokenizer, mask_count="exact", max_predictions_per_seq=512, seed=0)(exs)
    counts = [(row != -100).sum().item() for row in uncapped["labels"]]
    assert counts == [max(1, round((len(e["input_ids"]) - 3) * 0.15)) for e in exs]
    exs = piecey_examples(tokenizer, 200, seed=5)
    wwm = DataCollatorForPreTraining(tokenizer, mask_count="exact", whole_word_mask=True, seed=0,
                                     max_predictions_per_seq=512)(exs)
    budgets = [max(1, round((len(e["input_ids"]) - 2) * 0.15)) for e in exs]
    counts = [(row != -100).sum().item() for row in wwm["labels"]]
    # Whole words fill the budget as far as they fit; never beyond it.
    assert all(c <= b for c, b in zip(counts, budgets)) and sum(counts) > 0.95 * sum(budgets)


def test_mlm_positions_are_the_targets_padded_with_a_non_target(tokenizer):
    from pipeline.collator import masked_positions

    collator = DataCollatorForPreTraining(tokenizer, seed=0, mlm_positions=True)
    batch = collator(make_examples(tokenizer, 64))
    flat = batch["labels"].reshape(-1)
    positions = batch["mlm_positions"]
    targets = (flat != -100).nonzero().squeeze(1)
    assert torch.equal(positions[:len(targets)], targets)
    assert (flat[positions[len(targets):]] == -100).all()
    for n, bucket in ((5, 5), (17, 18), (140, 144), (4000, 4096), (4097, 4608)):
        labels = torch.full((n + 3,), -100)
        labels[3:] = 7
        assert len(masked_positions(labels)) == bucket  # at most 1/8 padding, 8 sizes per doubling
    # Evaluation batches carry fixed labels: the model finds their targets itself
    fixed = fix_eval_masks(Dataset.from_list(make_examples(tokenizer, 8)), collator, seed=0)
    assert "mlm_positions" not in collator(list(fixed))
