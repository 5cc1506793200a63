"""Features -> padded, dynamically masked batches."""

import re
from dataclasses import dataclass

import torch
from datasets import Dataset
from transformers import DataCollatorForLanguageModeling

_MODEL_KEYS = ("input_ids", "token_type_ids", "attention_mask", "next_sentence_label", "labels")
_UNUSED = re.compile(r"\[unused\d+\]|<unused\d+>")


@dataclass
class DataCollatorForPreTraining(DataCollatorForLanguageModeling):
    """`DataCollatorForLanguageModeling` with masking done the reference's way.

    Kept from the parent: padding (here to a multiple of 8), argument checks and the seeded
    generator. Written here, because the parent cannot: special tokens found with one
    vectorised `isin` over the tokenizer's own special ids (the parent loops per row in
    Python), random replacements drawn only from real vocabulary tokens (the parent draws
    specials and [unusedN] slots too), and examples that already carry fixed `labels`
    (evaluation masks) padded with -100 and left unmasked.
    """

    pad_to_multiple_of: int | None = 8

    def __post_init__(self):
        super().__post_init__()
        specials = set(self.tokenizer.all_special_ids)
        self.special_ids = torch.tensor(sorted(specials), dtype=torch.long)
        self.replacement_ids = torch.tensor(sorted(
            i for token, i in self.tokenizer.get_vocab().items() if i not in specials and not _UNUSED.fullmatch(token)
        ), dtype=torch.long)

    def torch_call(self, examples):
        examples = [{k: e[k] for k in _MODEL_KEYS if k in e} for e in examples]
        if "labels" not in examples[0]:
            return super().torch_call(examples)
        labels = [e.pop("labels") for e in examples]
        batch = self.tokenizer.pad(examples, return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of)
        width = batch["input_ids"].shape[1]
        batch["labels"] = torch.tensor([list(row) + [-100] * (width - len(row)) for row in labels], dtype=torch.long)
        return batch

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        """Masks `mlm_probability` of the non-special tokens; returns (inputs, labels)."""
        inputs = inputs.clone()
        special = torch.isin(inputs, self.special_ids) if special_tokens_mask is None else special_tokens_mask.bool()
        probability = torch.full(inputs.shape, self.mlm_probability).masked_fill_(special, 0.0)
        masked = torch.bernoulli(probability, generator=self.generator).bool()
        labels = torch.where(masked, inputs, -100)
        # One uniform draw per position splits the masked ones into [MASK] / random / unchanged.
        u = torch.rand(inputs.shape, generator=self.generator)
        to_mask = masked & (u < self.mask_replace_prob)
        to_random = masked & ~to_mask & (u < self.mask_replace_prob + self.random_replace_prob)
        inputs[to_mask] = self.tokenizer.mask_token_id
        picks = torch.randint(len(self.replacement_ids), (int(to_random.sum()),), generator=self.generator)
        inputs[to_random] = self.replacement_ids[picks]
        return inputs, labels


def fix_eval_masks(dataset: Dataset, collator: DataCollatorForPreTraining, seed: int, batch_size: int = 256) -> Dataset:
    """Masks the held-out set once, seeded, and stores the masked ids and labels.

    Every evaluation (before, during, after training, and across runs) then scores the same
    positions, so differences come from the model, not from the draw of masks.
    """

    def mask_batch(batch, indices):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + indices[0])
        rows = [{"input_ids": ids} for ids in batch["input_ids"]]
        padded = collator.tokenizer.pad(rows, return_tensors="pt")["input_ids"]
        saved, collator.generator = collator.generator, generator
        try:
            masked, labels = collator.torch_mask_tokens(padded)
        finally:
            collator.generator = saved
        lengths = [len(ids) for ids in batch["input_ids"]]
        return {"input_ids": [m[:n].tolist() for m, n in zip(masked, lengths)],
                "labels": [lab[:n].tolist() for lab, n in zip(labels, lengths)]}

    # keep_in_memory: the prepared dataset folder stays exactly as `prepare` wrote it.
    return dataset.map(mask_batch, batched=True, batch_size=batch_size, with_indices=True, keep_in_memory=True,
                       desc="Fixing eval masks")
