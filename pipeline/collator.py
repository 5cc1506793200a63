"""Features -> padded, dynamically masked batches."""

import hashlib
import json
import re
from dataclasses import dataclass

import torch
from datasets import Dataset
from transformers import DataCollatorForLanguageModeling

from pipeline.encoding import pipeline_steps
from pipeline.errors import UsageError

_MODEL_KEYS = ("input_ids", "token_type_ids", "attention_mask", "next_sentence_label", "sentence_order_label", "labels")
_UNUSED = re.compile(r"\[unused\d+\]|<unused\d+>")


def word_rule(tokenizer) -> tuple[str, str]:
    """How the tokenizer's tokens show where words are: ("continuation", "##") where a word's later pieces are
    marked (WordPiece), ("start", "Ġ") or ("start", "▁") where a word's first piece is (byte-level BPE,
    SentencePiece), read from its model and pre-tokenizer.

    Byte-level BPE and SentencePiece split punctuation off a word without marking it as a start, so there
    "river," is one word to whole-word masking, as a word and its punctuation are one piece of text.
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model = state["model"]
    if model["type"] == "WordPiece":
        return "continuation", model.get("continuing_subword_prefix") or "##"
    for step in pipeline_steps(state.get("pre_tokenizer")) + pipeline_steps(state.get("normalizer")):
        if step["type"] == "ByteLevel":
            return "start", "Ġ"  # the byte a space maps to
        if step["type"] == "Metaspace":
            return "start", step["replacement"]
        if step["type"] == "Prepend":  # SentencePiece's prefix as a normalizer (Llama-style tokenizer.json)
            return "start", step["prepend"]
    if model["type"] == "BPE" and model.get("continuing_subword_prefix"):
        return "continuation", model["continuing_subword_prefix"]
    raise UsageError(f"whole_word_mask needs to know where words start, and the tokenizer ({model['type']}) marks "
                     "neither a word's later pieces (WordPiece's ##) nor its first (byte-level BPE's Ġ, "
                     "SentencePiece's ▁); set whole_word_mask false.")


def continuation_ids(vocab: dict[str, int], rule: tuple[str, str]) -> torch.Tensor:
    """A boolean per token id: True for a piece that continues the word before it."""
    kind, marker = rule
    continuation = torch.zeros(max(vocab.values()) + 1, dtype=torch.bool)
    continuation[[i for token, i in vocab.items() if token.startswith(marker) == (kind == "continuation")]] = True
    return continuation


@dataclass
class DataCollatorForPreTraining(DataCollatorForLanguageModeling):
    """`DataCollatorForLanguageModeling` with masking done the reference's way.

    Kept from the parent: its fields and argument checks, and padding through the tokenizer
    (here to a multiple of 8). Written here, because the parent cannot: special tokens found with one
    vectorised `isin` over the tokenizer's own special ids (the parent loops per row in
    Python); random replacements drawn only from real vocabulary tokens (the parent draws
    specials and [unusedN] slots too); whole-word masking that keeps 80/10/10 (the parent
    forces 100% [MASK] and needs offset mappings; here words are read from the tokens, as
    google-research/bert does with WordPiece's `##`: see `word_rule`); `mask_count="exact"`, round(n * p) tokens
    per sequence capped at `max_predictions_per_seq`, as the reference does (the parent
    masks a Bernoulli number); masks seeded per batch so a resumed run masks exactly as an
    unbroken one (see `batch_generator`); and examples that already carry fixed `labels`
    (evaluation masks) padded with -100 and left unmasked.
    """

    pad_to_multiple_of: int | None = 8
    mask_count: str = "per_token"
    epoch: int = 0  # set by the trainer at each epoch; part of the mask seed
    max_predictions_per_seq: int = 20
    # Also hand the model the flat indices of the masked positions (the sparse heads of pipeline/model.py take them).
    mlm_positions: bool = False

    def __post_init__(self):
        whole_word_mask, self.whole_word_mask = self.whole_word_mask, False  # keep the parent's WWM rules out
        super().__post_init__()
        self.whole_word_mask = whole_word_mask
        if self.mask_count not in ("per_token", "exact"):
            raise ValueError(f"mask_count must be 'per_token' or 'exact', not {self.mask_count!r}")
        vocab = self.tokenizer.get_vocab()
        specials = set(self.tokenizer.all_special_ids)
        self.special_ids = torch.tensor(sorted(specials), dtype=torch.long)
        self.replacement_ids = torch.tensor(sorted(
            i for token, i in vocab.items() if i not in specials and not _UNUSED.fullmatch(token)), dtype=torch.long)
        if self.whole_word_mask:
            self.continuation = continuation_ids(vocab, word_rule(self.tokenizer))

    def torch_call(self, examples):
        examples = [{k: e[k] for k in _MODEL_KEYS if k in e} for e in examples]
        labels = [e.pop("labels") for e in examples] if "labels" in examples[0] else None
        batch = self.tokenizer.pad(examples, return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of)
        if labels is None:
            batch["input_ids"], batch["labels"] = self.torch_mask_tokens(
                batch["input_ids"], generator=self.batch_generator(batch["input_ids"]))
            if self.mlm_positions:
                batch["mlm_positions"] = masked_positions(batch["labels"])
        else:
            width = batch["input_ids"].shape[1]
            batch["labels"] = torch.tensor([list(r) + [-100] * (width - len(r)) for r in labels], dtype=torch.long)
        return batch

    def batch_generator(self, input_ids: torch.Tensor) -> torch.Generator | None:
        """With `seed`: a generator seeded by (seed, epoch, the batch's token ids).

        The parent keeps one generator running across batches; its state would have to be saved
        with every checkpoint, and a dataloader that collates a batch ahead would still shift it,
        so a resumed run would mask differently. Seeding from what the batch is and which epoch it
        belongs to gives fresh masks every epoch and the same masks after a resume.
        """
        if self.seed is None:
            return None  # torch's global RNG
        key = f"{self.seed}-{self.epoch}".encode()
        digest = hashlib.blake2b(input_ids.numpy().tobytes(), digest_size=8, key=key).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None, generator=None):
        """Masks `mlm_probability` of the non-special tokens; returns (inputs, labels)."""
        inputs = inputs.clone()
        special = torch.isin(inputs, self.special_ids) if special_tokens_mask is None else special_tokens_mask.bool()
        if self.whole_word_mask:
            masked = self._choose_words(inputs, special, generator)
        elif self.mask_count == "exact":
            masked = self._choose_exact(torch.rand(inputs.shape, generator=generator), special,
                                        torch.ones(inputs.shape, dtype=torch.long))
        else:
            probability = torch.full(inputs.shape, self.mlm_probability).masked_fill_(special, 0.0)
            masked = torch.bernoulli(probability, generator=generator).bool()
        labels = torch.where(masked, inputs, -100)
        # One uniform draw per position splits the masked ones into [MASK] / random / unchanged.
        u = torch.rand(inputs.shape, generator=generator)
        to_mask = masked & (u < self.mask_replace_prob)
        to_random = masked & ~to_mask & (u < self.mask_replace_prob + self.random_replace_prob)
        inputs[to_mask] = self.tokenizer.mask_token_id
        picks = torch.randint(len(self.replacement_ids), (int(to_random.sum()),), generator=generator)
        inputs[to_random] = self.replacement_ids[picks]
        return inputs, labels

    def _budget(self, special):
        """Tokens to mask per row in exact mode: round(n * p) of the n real tokens, at least 1, capped."""
        real = (~special).sum(1)
        budget = torch.round(real * self.mlm_probability).clamp(min=1, max=self.max_predictions_per_seq)
        return torch.minimum(budget, real)

    def _choose_exact(self, scores, special, sizes):
        """Takes units (tokens, or whole words at their first piece) in random order while they fit the budget.

        `scores` gives the random order; `sizes` is each unit's token count (0 where no unit starts). Like the
        reference, a word too big for what is left is skipped and smaller ones after it are still taken.
        """
        scores = scores.masked_fill(special | (sizes == 0), float("inf"))
        order = scores.argsort(dim=1)
        ordered = torch.gather(sizes, 1, order).masked_fill(~torch.gather(scores, 1, order).isfinite(), 0)
        budget = self._budget(special)
        if ordered.max() <= 1:  # single tokens: the first `budget` candidates
            taken = (ordered.cumsum(1) <= budget[:, None]) & (ordered > 0)
        else:  # words: one vector step per rank, at most sequence-length steps
            taken = torch.zeros_like(special)
            for j in range(ordered.shape[1]):
                fits = (ordered[:, j] > 0) & (ordered[:, j] <= budget)
                taken[:, j] = fits
                budget = budget - ordered[:, j] * fits
        return torch.zeros_like(special).scatter_(1, order, taken)

    def _choose_words(self, inputs, special, generator):
        """Whole-word selection: a word is its first piece and the continuation pieces that follow it."""
        continuation = self.continuation[inputs] & ~special
        previous_special = torch.nn.functional.pad(special[:, :-1], (1, 0), value=True)
        # A piece that lost its word start to truncation starts a word of its own.
        starts = ~special & (~continuation | previous_special)
        word = starts.cumsum(1)  # word number of every position (specials keep the previous number)
        sizes = torch.zeros(inputs.shape[0], inputs.shape[1] + 1, dtype=torch.long)
        sizes.scatter_add_(1, word, (~special).long())  # tokens per word number
        start_sizes = torch.where(starts, torch.gather(sizes, 1, word), 0)
        if self.mask_count == "exact":
            chosen_starts = self._choose_exact(torch.rand(inputs.shape, generator=generator), special,
                                               start_sizes)
        else:
            chosen_starts = starts & (torch.rand(inputs.shape, generator=generator) < self.mlm_probability)
        rows = torch.arange(inputs.shape[0])[:, None].expand_as(word)
        chosen_words = torch.zeros(inputs.shape[0], inputs.shape[1] + 1, dtype=torch.bool)
        chosen_words[rows[chosen_starts], word[chosen_starts]] = True
        return torch.gather(chosen_words, 1, word) & ~special


def masked_positions(labels: torch.Tensor) -> torch.Tensor:
    """The flat indices of the MLM targets in `labels`, padded with the index of a position that is no target (its
    label, -100, is ignored by the loss) to a bucket: a multiple of an eighth of the largest power of two in their
    number, so at most 1/8 of the rows are padding and a compiled model sees 8 shapes per doubling.

    Found here, on the CPU that masked the batch, the model gathers its masked rows with no boolean indexing: on a
    GPU that would stop the host until the encoder has run, and give each batch a new shape to compile for.
    """
    flat = labels.reshape(-1)
    targets = (flat != -100).nonzero().squeeze(1)
    multiple = 1 << max(len(targets).bit_length() - 4, 0)
    padding = -len(targets) % multiple
    if not padding:
        return targets
    filler = int((flat == -100).nonzero()[0])  # [CLS] is never a target
    return torch.cat([targets, targets.new_full((padding,), filler)])


def fix_eval_masks(dataset: Dataset, collator: DataCollatorForPreTraining, seed: int, batch_size: int = 256) -> Dataset:
    """Masks the held-out set once, seeded, and stores the masked ids and labels.

    Every evaluation (before, during, after training, and across runs) then scores the same
    positions, so differences come from the model, not from the draw of masks.
    """

    def mask_batch(batch, indices):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + indices[0])
        rows = [{"input_ids": ids} for ids in batch["input_ids"]]
        padded = collator.tokenizer.pad(rows, return_tensors="pt")["input_ids"]
        masked, labels = collator.torch_mask_tokens(padded, generator=generator)
        lengths = [len(ids) for ids in batch["input_ids"]]
        return {"input_ids": [m[:n].tolist() for m, n in zip(masked, lengths)],
                "labels": [lab[:n].tolist() for lab, n in zip(labels, lengths)]}

    # keep_in_memory: the prepared dataset folder stays exactly as `prepare` wrote it.
    return dataset.map(mask_batch, batched=True, batch_size=batch_size, with_indices=True, keep_in_memory=True,
                       desc="Fixing eval masks")
