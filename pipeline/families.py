"""Model type -> its family: which stock classes pre-train it, how its heads run, what it reserves.

One row per `model_type` (a checkpoint's config.json names it). `pipeline/model.py` builds each row's
training classes from it; a new family is one row here. What belongs to the tokenizer (the special-token
template around A and B, where words start for whole-word masking) is read from the tokenizer itself
(`pipeline/features.py`, `pipeline/collator.py`), so a family trained with another kind of tokenizer
still gets the right template and word boundaries.
"""

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.errors import UsageError


def modules(*paths: str) -> Callable:
    """A head that applies the model's submodules at `paths` in order (the stock forward's own sequence)."""

    def head(model, hidden_states):
        for path in paths:
            hidden_states = model.get_submodule(path)(hidden_states)
        return hidden_states

    return head


def _deberta_v2_mlm(model, hidden_states):
    # DebertaV2ForMaskedLM has two heads, chosen by config.legacy; the newer one reads the word embeddings.
    if model.config.legacy:
        return model.cls(hidden_states)
    return model.lm_predictions(hidden_states, model.deberta.embeddings.word_embeddings)


@dataclass(frozen=True)
class Family:
    """How one model type pre-trains.

    Attributes:
        model_type: The config's `model_type`.
        name: The family in prose ("A RoBERTa further pre-trained on ...").
        masked_lm: The stock class for `--objective mlm`.
        pretraining: The stock class with MLM and sentence heads, for `nsp`/`sop`; None where the family has no
            sentence head.
        mlm_head: (model, hidden states at the masked positions only) -> vocabulary logits; the same modules as the
            stock forward, run on the masked rows instead of every position.
        sentence_head: The pre-training class's module that turns the pooled first position into two logits.
        sentence_label: The pre-training class's name for the sentence label.
        token_type_ids: Whether the encoder takes token types (segment A/B embeddings).
        reserved_positions: Position embeddings the model never gives a token (RoBERTa's start after padding_idx).
        layer: The transformer layer class: FSDP's wrapping unit.
        tokenizer: The kind of tokenizer its checkpoints ship (documentation; the run reads the real one).
    """

    model_type: str
    name: str
    masked_lm: str
    pretraining: str | None
    mlm_head: Callable
    layer: str
    tokenizer: str
    sentence_head: str | None = None
    sentence_label: str = "next_sentence_label"
    token_type_ids: bool = True
    reserved_positions: int = 0

    @property
    def objectives(self) -> tuple[str, ...]:
        """The objectives it can train: MLM, and with a sentence head NSP and SOP (a two-way head learns either)."""
        return ("nsp", "sop", "mlm") if self.pretraining else ("mlm",)

    @property
    def a_name(self) -> str:
        """"a RoBERTa", "an ALBERT": the name with its article, by the name's first sound."""
        return f"{'an' if self.name[0] in 'AEIX' else 'a'} {self.name}"


FAMILIES = {family.model_type: family for family in [
    Family("bert", "BERT", "BertForMaskedLM", "BertForPreTraining", modules("cls.predictions"), "BertLayer",
           "WordPiece", sentence_head="cls.seq_relationship"),
    Family("albert", "ALBERT", "AlbertForMaskedLM", "AlbertForPreTraining", modules("predictions"), "AlbertLayer",
           "SentencePiece Unigram", sentence_head="sop_classifier", sentence_label="sentence_order_label"),
    Family("megatron-bert", "Megatron-BERT", "MegatronBertForMaskedLM", "MegatronBertForPreTraining",
           modules("cls.predictions"), "MegatronBertLayer", "WordPiece", sentence_head="cls.seq_relationship"),
    Family("ernie", "ERNIE", "ErnieForMaskedLM", "ErnieForPreTraining", modules("cls.predictions"), "ErnieLayer",
           "WordPiece", sentence_head="cls.seq_relationship"),
    Family("roberta", "RoBERTa", "RobertaForMaskedLM", None, modules("lm_head"), "RobertaLayer", "byte-level BPE",
           token_type_ids=False, reserved_positions=2),
    Family("xlm-roberta", "XLM-RoBERTa", "XLMRobertaForMaskedLM", None, modules("lm_head"), "XLMRobertaLayer",
           "SentencePiece Unigram", token_type_ids=False, reserved_positions=2),
    Family("camembert", "CamemBERT", "CamembertForMaskedLM", None, modules("lm_head"), "CamembertLayer",
           "SentencePiece Unigram", token_type_ids=False, reserved_positions=2),
    # ModernBERT's own `sparse_prediction` runs head and decoder on the masked rows too; here that is done whatever
    # its config says.
    Family("modernbert", "ModernBERT", "ModernBertForMaskedLM", None, modules("head", "decoder"),
           "ModernBertEncoderLayer", "byte-level BPE", token_type_ids=False),
    Family("deberta-v2", "DeBERTa-v2", "DebertaV2ForMaskedLM", None, _deberta_v2_mlm, "DebertaV2Layer",
           "SentencePiece Unigram"),
    Family("distilbert", "DistilBERT", "DistilBertForMaskedLM", None,
           modules("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector"), "TransformerBlock",
           "WordPiece", token_type_ids=False),
    # The generator: ElectraForMaskedLM; a discriminator checkpoint gets a new generator head.
    Family("electra", "ELECTRA", "ElectraForMaskedLM", None, modules("generator_predictions", "generator_lm_head"),
           "ElectraLayer", "WordPiece"),
]}


def family_of(model_type: str, path: str, objective: str) -> Family:
    """The family of a checkpoint, refused in one sentence if this tool cannot train it on `objective`."""
    family = FAMILIES.get(model_type)
    if family is None:
        raise UsageError(f"model {path} is a {model_type} model, which this tool cannot pre-train; give a checkpoint "
                         f"of one of: {', '.join(FAMILIES)} (docs/families.md).")
    if objective not in family.objectives:
        raise UsageError(f"model {path} is {family.a_name} ({model_type}) model and has no next-sentence or "
                         f"sentence-order head for --objective {objective}; it can do --objective "
                         f"{' or '.join(family.objectives)}.")
    return family


def family_by_class(class_name: str) -> Family | None:
    """The family whose stock class this is (a saved model's `architectures`), or None."""
    return next((f for f in FAMILIES.values() if class_name in (f.masked_lm, f.pretraining)), None)
