"""Checkpoint name -> a model of its family with MLM (and NSP/SOP) heads whose MLM head runs only where it must."""

import functools
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import transformers
from transformers import AutoConfig
from transformers.modeling_outputs import MaskedLMOutput
from transformers.models.bert.modeling_bert import BertForPreTrainingOutput
from transformers.utils import logging as hf_logging

from pipeline.cross_entropy import masked_token_sums
from pipeline.errors import UsageError, first_line
from pipeline.families import FAMILIES, Family, family_of
from pipeline.heads import HeadSums
from pipeline.tokenizer import resolve_model_path


@dataclass
class PreTrainingOutput(BertForPreTrainingOutput):
    """In training mode also `head_sums` (`HeadSums.to_tensor()`), so Trainer can normalise over the whole
    accumulated batch."""

    head_sums: torch.Tensor | None = None


@dataclass
class MaskedLMSumsOutput(MaskedLMOutput):
    head_sums: torch.Tensor | None = None


class SavedAsStockClass:
    """Saves a training-time subclass so that config.json names the stock transformers class and keeps the values
    training changed (`config_as_saved`: the attention dropout)."""

    stock_class: str
    config_as_saved: dict = {}

    def save_pretrained(self, save_directory, *args, **kwargs):
        training_values = {name: getattr(self.config, name) for name in self.config_as_saved}
        self.config.update(self.config_as_saved)
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
            if kwargs.get("is_main_process", True):
                self.config.architectures = [self.stock_class]
                self.config.save_pretrained(save_directory)
        finally:
            self.config.update(training_values)


# Where configs keep the dropout on attention probabilities (BERT and most families; DistilBERT, ModernBERT).
_ATTENTION_DROPOUT_FIELDS = ("attention_probs_dropout_prob", "attention_dropout")


def set_attention_dropout(config, probability: float | None) -> dict:
    """Sets the config's attention dropout for the model about to be built from it; returns {field: the config's
    own value}, for saving, or {} where nothing changed."""
    name = next((f for f in _ATTENTION_DROPOUT_FIELDS if isinstance(getattr(config, f, None), (int, float))), None)
    if probability is None or name is None or getattr(config, name) == probability:
        return {}
    own = {name: getattr(config, name)}
    setattr(config, name, probability)
    return own


def describe_attention_dropout(model) -> str:
    """One line: the attention dropout this training uses instead of the model's own."""
    (name, own), = model.config_as_saved.items()
    return (f"attention dropout {getattr(model.config, name):g} while training (attention_dropout), saved "
            f"checkpoints keep the model's {own:g}.")


def attention_dropout_of(model) -> float | None:
    """The attention dropout the model trains with."""
    return next((getattr(model.config, f) for f in _ATTENTION_DROPOUT_FIELDS if hasattr(model.config, f)), None)


def raise_sentence_gradient(grad: torch.Tensor, share: float) -> torch.Tensor:
    """The gradient at the encoder's output, with the [CLS] position's raised to at least `share` of the rest's norm.

    Only the sentence head reads [CLS] (through the pooler) and only the MLM head reads the masked
    positions ([CLS] is never masked), so here, and only here, the two heads' gradients into the shared
    encoder are apart. Summed as they are, the MLM gradient is 30x the sentence head's at the start of
    further pre-training (120x over the encoder's weights): Adam's per-weight normalisation then
    follows MLM alone, and a new NSP head ends at the majority class while NSP alone learns on the
    same pairs. Raising the [CLS] part balances the two in one backward pass (as GradNorm balances
    task gradients at the last shared layer); the heads' own weights keep their true gradients.
    """
    cls, rest = grad[:, 0].float().norm(), grad[:, 1:].float().norm()
    scale = (share * rest / cls.clamp(min=1e-12)).clamp(min=1.0)
    grad = grad.clone()
    grad[:, 0] = (grad[:, 0].float() * scale).to(grad.dtype)
    return grad


class SparseHeads(SavedAsStockClass):
    """A stock pre-training or masked-LM class whose MLM decoder runs only at masked positions.

    The family's (`pipeline/families.py`) MLM head is applied to the encoder's output at the masked rows
    only: the vocabulary-wide decoder is most of the head's cost and all other rows are thrown away. Same
    weights and state-dict keys as the stock class, so checkpoints load anywhere as it. With labels it
    returns the logits at the masked positions, flattened to (num_masked, vocab) in row-major order (at the
    collator's `mlm_positions` when given: their padding rows too, whose target is -100), and in
    training the per-head `HeadSums`; without labels (probes) the logits at every position. In training, with
    `sentence_gradient_share` set, the sentence head's gradient into the encoder is raised to at least that
    share of the MLM head's (`raise_sentence_gradient`).
    """

    family: Family
    with_sentence_head: bool
    sentence_gradient_share: float | None = None

    def post_init(self):
        super().post_init()
        # FSDP wraps each transformer layer of the family, and only those (accelerate reads `_no_split_modules` when
        # the launch config names no class; post_init gathers the embeddings' class there too).
        self._no_split_modules = {self.family.layer}

    def heads_forward(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, labels,
                      sentence_label, mlm_positions=None):
        inputs = {"attention_mask": attention_mask, "inputs_embeds": inputs_embeds}
        if position_ids is not None:
            inputs["position_ids"] = position_ids
        if self.family.token_type_ids:
            inputs["token_type_ids"] = token_type_ids
        outputs = self.base_model(input_ids, **inputs)
        sequence_output = outputs[0]
        sentence_head = self.get_submodule(self.family.sentence_head) if self.with_sentence_head else None
        if sentence_head is not None and self.training and sentence_label is not None and \
                self.sentence_gradient_share and sequence_output.requires_grad:
            # The pooler inside the encoder read this tensor too: the hook sees the whole gradient into it.
            sequence_output.register_hook(functools.partial(raise_sentence_gradient,
                                                            share=self.sentence_gradient_share))
        sentence_logits = sentence_head(outputs.pooler_output) if sentence_head is not None else None
        if labels is None:
            return self._output(None, self.family.mlm_head(self, sequence_output), sentence_logits, None)
        if mlm_positions is None:
            masked = labels != -100
            rows, targets = sequence_output[masked], labels[masked]
        else:  # the collator's flat indices (padded with non-targets): no boolean indexing, a stable shape
            rows = sequence_output.reshape(-1, sequence_output.shape[-1]).index_select(0, mlm_positions)
            targets = labels.reshape(-1).index_select(0, mlm_positions)
        prediction_logits = self.family.mlm_head(self, rows)
        # Losses in float32: a bf16 log-softmax over 30k classes loses precision.
        mlm_sum, mlm_count, mlm_correct = masked_token_sums(prediction_logits, targets)
        loss = mlm_sum / mlm_count.clamp(min=1)
        sums = HeadSums(mlm_sum, mlm_count, mlm_correct)
        if sentence_logits is not None and sentence_label is not None:
            targets = sentence_label.view(-1)
            sentence_sum = F.cross_entropy(sentence_logits.float(), targets, reduction="sum")
            loss = loss + sentence_sum / targets.numel()
            correct = (sentence_logits.detach().argmax(-1) == targets).sum()
            sums = HeadSums(mlm_sum, mlm_count, mlm_correct, sentence_sum, targets.new_tensor(targets.numel()),
                            correct)
        return self._output(loss, prediction_logits, sentence_logits, sums.to_tensor() if self.training else None)

    def _output(self, loss, prediction_logits, sentence_logits, head_sums):
        if sentence_logits is None:
            return MaskedLMSumsOutput(loss=loss, logits=prediction_logits, head_sums=head_sums)
        return PreTrainingOutput(loss=loss, prediction_logits=prediction_logits,
                                 seq_relationship_logits=sentence_logits, head_sums=head_sums)


# One forward per label name, with the stock class's own signature: Trainer reads the label names from it.
class MaskedLMHeads(SparseHeads):
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, mlm_positions=None):
        return self.heads_forward(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, labels,
                                  None, mlm_positions)


class NextSentenceHeads(SparseHeads):
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, next_sentence_label=None, mlm_positions=None):
        return self.heads_forward(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, labels,
                                  next_sentence_label, mlm_positions)


class SentenceOrderHeads(SparseHeads):
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, sentence_order_label=None, mlm_positions=None):
        return self.heads_forward(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, labels,
                                  sentence_order_label, mlm_positions)


SENTENCE_HEADS = {"next_sentence_label": NextSentenceHeads, "sentence_order_label": SentenceOrderHeads}


@functools.cache
def training_class(model_type: str, sentence_head: bool) -> type:
    """The family's stock pre-training class (or masked-LM class, without a sentence head) with sparse heads."""
    family = FAMILIES[model_type]
    stock_class = family.pretraining if sentence_head else family.masked_lm
    heads = SENTENCE_HEADS[family.sentence_label] if sentence_head else MaskedLMHeads
    return type(f"{stock_class}Sparse", (heads, getattr(transformers, stock_class)),
                {"family": family, "stock_class": stock_class, "with_sentence_head": sentence_head,
                 "__module__": __name__})


BertForPreTrainingSparse = training_class("bert", True)
BertForMaskedLMSparse = training_class("bert", False)


def load_model(model_name_or_path: str, *, objective: str = "nsp", cache_dir: str | None = None,
               revision: str = "main", trust_remote_code: bool = False, attention_dropout: float | None = None):
    """A model of the checkpoint's family with the heads `objective` needs: MLM + NSP/SOP (the family's pre-training
    class), or MLM only (its masked-LM class).

    A checkpoint saved without pre-training heads (a `BertModel`, or `BertForMaskedLM` for NSP) gets them newly
    initialised, as `from_pretrained` does, and says so. A model of no family in `pipeline/families.py`, one with
    no sentence head asked for NSP/SOP, or one that cannot tell segment A from B, is refused. With
    attention_dropout, the model trains with that dropout on attention probabilities and saves its own.
    """
    path = resolve_model_path(model_name_or_path)
    try:
        config = AutoConfig.from_pretrained(path, cache_dir=cache_dir, revision=revision,
                                            trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise UsageError(f"model {path} could not be loaded ({first_line(e)}); give a local model folder or a "
                         "Hub model id.") from None
    model_class = training_class(_check_family(config, path, objective).model_type, objective != "mlm")
    config_as_saved = set_attention_dropout(config, attention_dropout)
    # A base checkpoint has no pre-training heads: say so in one line instead of a load report.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = model_class.from_pretrained(
            path, config=config, cache_dir=cache_dir, revision=revision, trust_remote_code=trust_remote_code,
            output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as e:  # no weights file, or weights of another shape
        raise UsageError(f"the weights of model {path} could not be loaded ({first_line(e)}); give a complete "
                         "checkpoint folder or Hub model id.") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    # Weights the checkpoint lacks (tied ones are not parameters of their own); train gives them their own rate.
    # The commands say so once, on the main process (describe_head_training, describe_new_heads).
    model.newly_initialised = [name for name, _ in model.named_parameters() if name in set(info["missing_keys"])]
    model.config_as_saved = config_as_saved
    return model


def sentence_head_prefixes(model) -> tuple[str, ...]:
    """The sentence head's weights: the pooler and the NSP/SOP classifier it feeds (none without a sentence head)."""
    if not getattr(model, "with_sentence_head", False):
        return ()
    return f"{model.family.sentence_head}.", f"{model.base_model_prefix}.pooler."


def describe_new_heads(model, model_name_or_path: str) -> str | None:
    """One line naming the pre-training head parts the checkpoint lacked, or None."""
    encoder = f"{model.base_model_prefix}."
    new = sorted({k.removeprefix("cls.").split(".")[0] for k in getattr(model, "newly_initialised", [])
                  if not k.startswith(encoder)})
    return f"{model_name_or_path}: newly initialised pre-training head parts: {', '.join(new)}" if new else None


def head_weights(model) -> list[str]:
    """The weights that train at head_learning_rate: the MLM head's weights the checkpoint lacked.

    A new MLM transform must learn a 30k-way prediction from the encoder's states and needs larger steps
    than the pretrained encoder can take. The sentence classifier is a two-way linear probe on the pooled
    [CLS]: at the head rate it chases each batch's noise, and it (and the pooler) train at the encoder's
    rate. Measured on the quickstart, same data and seeds 42 / 7: held-out NSP 64.6% / 59.2% with the
    sentence head at the encoder's rate, 61.2% / 55.2% with it (and the pooler) at the head rate; NSP
    alone 68.9% / 61.6%.
    """
    sentence_head = sentence_head_prefixes(model)
    return [name for name in getattr(model, "newly_initialised", []) if not name.startswith(sentence_head)]


def describe_head_training(head_weight_names: list[str], *, objective: str, learning_rate: float,
                           head_learning_rate: float, moments: str = "shared",
                           sentence_gradient_share: float | None = None, fallback: str | None = None) -> str:
    """One line: which head weights start untrained and what the run does about them."""
    modules = sorted({name.rsplit(".", 1)[0] for name in head_weight_names})
    parts = [f"newly initialised MLM head weights: {', '.join(modules)}; they train at head_learning_rate "
             f"{head_learning_rate:g}, the rest (a new sentence classifier too) at learning_rate {learning_rate:g}"
             if modules else f"no newly initialised MLM head weights; all train at learning_rate {learning_rate:g}"]
    if objective != "mlm":
        head = objective.upper()
        if moments == "separate":
            parts.append(f"the {head} head's gradient has AdamW moments of its own (head_moments separate: a second "
                         "backward pass), so MLM's larger gradient does not set its step size")
        else:
            because = f"head_moments shared, since {fallback}" if fallback else "head_moments shared"
            parts.append(f"the {head} head's gradient into the encoder is raised to at least "
                         f"{sentence_gradient_share:g} of the MLM gradient's norm ({because})" if sentence_gradient_share
                         else f"the two losses are summed as BERT does ({because}, sentence_gradient_share 0)")
    return "; ".join(parts) + "."


def check_model_fits(tokenizer_size: int, config, max_seq_length: int) -> None:
    """Refuses a tokenizer with ids beyond the model's embeddings, or sequences beyond its positions."""
    if tokenizer_size > config.vocab_size:
        raise UsageError(f"the tokenizer has {tokenizer_size:,} tokens but the model's embeddings have "
                         f"{config.vocab_size:,} rows, so it is not this model's tokenizer; give the model's "
                         "own (drop tokenizer_name) or a matching one.")
    reserved = FAMILIES[config.model_type].reserved_positions if config.model_type in FAMILIES else 0
    if max_seq_length > config.max_position_embeddings - reserved:
        of_which = f" ({reserved} of them reserved, as {FAMILIES[config.model_type].name} does)" if reserved else ""
        raise UsageError(f"max_seq_length {max_seq_length} is above the model's "
                         f"{config.max_position_embeddings} position embeddings{of_which}; lower max_seq_length.")


def _check_family(config, path: str, objective: str) -> Family:
    family = family_of(config.model_type, path, objective)
    if objective != "mlm" and getattr(config, "type_vocab_size", 0) < 2:
        raise UsageError(f"model {path} has type_vocab_size {getattr(config, 'type_vocab_size', 0)}, no segment B "
                         f"embedding, so it cannot learn --objective {objective}; use --objective mlm.")
    return family


def new_model(config_name: str, *, vocab_size: int, pad_token_id: int = 0, objective: str = "nsp",
              cache_dir: str | None = None, revision: str = "main", trust_remote_code: bool = False,
              attention_dropout: float | None = None):
    """A model with random weights built from a config (a folder, a Hub id or package:PKG/DIR), sized for a vocabulary.

    Args:
        config_name: Where the config is; only its architecture is used, never weights.
        vocab_size: Rows of the embedding matrix: the new tokenizer's length.
        pad_token_id: The new tokenizer's [PAD] id.
        objective: Which heads, as in `load_model`.
        attention_dropout: As in `load_model`.
    """
    path = resolve_model_path(config_name)
    if path.startswith(("/", ".", "~")) and not os.path.exists(os.path.expanduser(path)):
        raise UsageError(f"config path {path} does not exist; give a folder with a config.json or a Hub model id.")
    try:
        config = AutoConfig.from_pretrained(path, cache_dir=cache_dir, revision=revision,
                                            trust_remote_code=trust_remote_code, vocab_size=vocab_size,
                                            pad_token_id=pad_token_id)
    except (OSError, ValueError) as e:
        raise UsageError(f"config {path} could not be loaded ({first_line(e)}); give a folder with a config.json "
                         "or a Hub model id.") from None
    family = _check_family(config, path, objective)
    config_as_saved = set_attention_dropout(config, attention_dropout)
    model = training_class(family.model_type, objective != "mlm")(config)
    model.newly_initialised = []  # every weight is new: nothing to set apart
    model.config_as_saved = config_as_saved
    return model
