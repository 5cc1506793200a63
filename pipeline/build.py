"""Arguments -> objects: the corpus, tokenizer and vocabulary change, model, prepared and held-out datasets,
collator and Trainer; the user's task and the budget it is probed with.

The one place where the argument dataclasses become plain values; every command (`prepare`,
`inspect`, `vocab`, `train`, `evaluate`, `probe`) is a short function over these builders, and nothing they
call sees an argument object. Which process works first and which reuses its work is decided here.

Only what preparing the data needs is imported at the top: the builders of the model, collator, Trainer and task
import theirs inside, so `prepare`, `inspect` and `vocab` never load the model classes, Trainer or `evaluate`
(scikit-learn, scipy): about a second of every start (tests/test_layout.py checks it).
"""

import functools
import math
import os
import shutil
from typing import NamedTuple

from datasets import DatasetDict

from pipeline.arguments import HEAD_LEARNING_RATE_FACTOR
from pipeline.cache import cache_root, remove_stale_scratch, scratch_path
from pipeline.corpus import resolve_train_files
from pipeline.prepare import Prepared, check_holdout, load_corpus, prepare_dataset
from pipeline.tokenizer import load_tokenizer
from pipeline.vocabulary import VocabularyChange, change_vocabulary, init_new_embeddings


def data_seed(training_args) -> int:
    """The seed of everything drawn from the data (held-out documents, pairs): data_seed, or else seed."""
    return training_args.data_seed if training_args.data_seed is not None else training_args.seed


class Corpus:
    """The corpus the arguments name, read and split into training and held-out documents at most once, and only
    when something is computed from it: a prepared dataset found in the cache needs no corpus at all.

    Used as a context manager: the tables derived from the corpus live in a private folder of the cache,
    deleted on leaving (and, if the process was killed, by the next run on this host).
    """

    def __init__(self, model_args, data_args, training_args):
        self.train_file, self.dataset_name = data_args.train_file, data_args.dataset_name
        self.cache_dir = model_args.cache_dir
        self.load = functools.partial(
            load_corpus, document_format=data_args.document_format, text_column=data_args.text_column,
            dataset_name=data_args.dataset_name, dataset_config_name=data_args.dataset_config_name,
            cache_dir=model_args.cache_dir, validation_split_percentage=data_args.validation_split_percentage,
            seed=data_seed(training_args))
        self.validation_split_percentage = data_args.validation_split_percentage
        self.work_dir = scratch_path(cache_root(model_args.cache_dir) / "corpus", "work")
        self._documents = None

    def documents(self, check: bool = True) -> DatasetDict:
        """{"train": documents, "validation": documents}, column `text`; with check, refused if nothing is held out
        (`prepare_dataset` checks that itself, after the checks that come first)."""
        if self._documents is None:
            remove_stale_scratch(self.work_dir)
            shutil.rmtree(self.work_dir, ignore_errors=True)  # an earlier process with this host and pid
            files = resolve_train_files(self.train_file, self.cache_dir) if self.train_file and not \
                self.dataset_name else []
            self._documents = self.load(files, work_dir=str(self.work_dir))
        if check:
            check_holdout(self._documents, self.validation_split_percentage)
        return self._documents

    def training_texts(self):
        """The training documents' texts: a lazy Arrow column, read in batches on each pass, never all at once."""
        return self.documents()["train"]["text"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._documents = None
        shutil.rmtree(self.work_dir, ignore_errors=True)


def build_tokenizer(model_args):
    """The model's tokenizer (or tokenizer_name's)."""
    return load_tokenizer(model_args.model_name_or_path, tokenizer_name=model_args.tokenizer_name,
                          cache_dir=model_args.cache_dir, revision=model_args.model_revision,
                          trust_remote_code=model_args.trust_remote_code)


def build_vocabulary(tokenizer, model_args, training_args, corpus: Corpus,
                     top_k: int = 20) -> tuple[object, VocabularyChange | None]:
    """`tokenizer` extended with domain words or replaced by one trained from scratch, as asked, and the change."""
    if not (model_args.add_domain_tokens or model_args.domain_tokens_file or model_args.tokenizer_from_scratch):
        return tokenizer, None
    # The main process reads the corpus (and trains a scratch tokenizer) first; the others reuse its work.
    with training_args.main_process_first(local=False, desc="vocabulary"):
        return change_vocabulary(tokenizer, corpus.training_texts(), add_domain_tokens=model_args.add_domain_tokens,
                                 domain_tokens_file=model_args.domain_tokens_file,
                                 tokenizer_from_scratch=model_args.tokenizer_from_scratch,
                                 cache_dir=model_args.cache_dir, top_k=top_k)


def build_model(model_args, data_args, vocabulary: VocabularyChange | None = None):
    """The checkpoint's model, grown for added domain tokens; with a tokenizer from scratch, a new one of
    config_name's family."""
    from pipeline.model import check_model_fits, load_model, new_model

    dropout = model_args.attention_dropout
    if vocabulary is not None and vocabulary.from_scratch:
        return new_model(model_args.config_name, vocab_size=vocabulary.vocab_size, objective=data_args.objective,
                         cache_dir=model_args.cache_dir, revision=model_args.model_revision,
                         trust_remote_code=model_args.trust_remote_code, attention_dropout=dropout)
    model = load_model(model_args.model_name_or_path, objective=data_args.objective, cache_dir=model_args.cache_dir,
                       revision=model_args.model_revision, trust_remote_code=model_args.trust_remote_code,
                       attention_dropout=dropout)
    if vocabulary is not None:  # the tokenizer it extends must fit the model it extends
        check_model_fits(vocabulary.vocab_size_before, model.config, data_args.max_seq_length)
        init_new_embeddings(model, vocabulary.added, vocabulary.vocab_size)
    return model


class HeadTraining(NamedTuple):
    """What a run does about its heads: the rate of the MLM head's new weights, which those are, and whether the
    sentence head's gradient gets AdamW moments of its own."""

    learning_rate: float
    weights: list[str]
    separate_moments: bool


def build_head_training(model, model_args, data_args, training_args) -> HeadTraining:
    """The run's `HeadTraining`; sets the model's sentence_gradient_share (with shared moments) and says so."""
    from pipeline.model import describe_head_training, head_weights

    # New heads train faster than the pretrained encoder, and the sentence head's gradient is not drowned by MLM's
    head_learning_rate = model_args.head_learning_rate or HEAD_LEARNING_RATE_FACTOR * training_args.learning_rate
    new_heads = head_weights(model)
    moments, why = "shared", None
    if data_args.objective != "mlm":
        moments, why = head_moments(model_args.head_moments, training_args)
        model.sentence_gradient_share = model_args.sentence_gradient_share if moments == "shared" else None
    if training_args.process_index == 0:
        print(describe_head_training(new_heads, objective=data_args.objective,
                                     learning_rate=training_args.learning_rate, head_learning_rate=head_learning_rate,
                                     moments=moments, sentence_gradient_share=model_args.sentence_gradient_share,
                                     fallback=why))
    return HeadTraining(head_learning_rate, new_heads, moments == "separate")


def head_moments(asked: str, training_args, environ=os.environ) -> tuple[str, str | None]:
    """("separate" or "shared", why separate was asked for but cannot be had here, or None).

    Separate moments need the whole gradient of each weight on each process, in an AdamW this tool builds: FSDP
    and DeepSpeed shard gradients and optimizer state in hooks of their own, other optimizers have other state.
    """
    if asked == "shared":
        return "shared", None
    if training_args.fsdp or environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "shared", "FSDP shards the gradients"
    if training_args.deepspeed or environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "shared", "DeepSpeed owns the optimizer"
    optim = getattr(training_args.optim, "value", training_args.optim)  # an OptimizerNames once parsed
    if optim not in ("adamw_torch", "adamw_torch_fused"):
        return "shared", f"optim {optim} is not AdamW"
    return "separate", None


def _prepare(tokenizer, model_args, data_args, training_args, **inputs) -> Prepared:
    with training_args.main_process_first(desc="prepare dataset"):
        return prepare_dataset(
            tokenizer, dataset_config_name=data_args.dataset_config_name, text_column=data_args.text_column,
            document_format=data_args.document_format, language=data_args.language, cache_dir=model_args.cache_dir,
            max_seq_length=data_args.max_seq_length, short_seq_prob=data_args.short_seq_prob,
            nsp_probability=data_args.nsp_probability, pairing=data_args.pairing, objective=data_args.objective,
            seed=data_seed(training_args), num_proc=data_args.preprocessing_num_workers,
            overwrite_cache=data_args.overwrite_cache, **inputs)


def build_dataset(tokenizer, model_args, data_args, training_args, corpus: Corpus) -> Prepared:
    """The prepared dataset: built by the main process first (from `corpus`, on a cache miss), reused by the others."""
    return _prepare(tokenizer, model_args, data_args, training_args, train_files=data_args.train_file,
                    dataset_name=data_args.dataset_name, dataset_dir=data_args.dataset_dir,
                    portable=bool(data_args.dataset_dir),
                    validation_split_percentage=data_args.validation_split_percentage,
                    dupe_factor=data_args.dupe_factor or math.ceil(training_args.num_train_epochs),
                    read_corpus=functools.partial(corpus.documents, check=False))


def build_prepared(model_args, data_args, training_args) -> tuple[object, Prepared]:
    """The run's tokenizer and its prepared dataset, without a model (`prepare`, `inspect`)."""
    with Corpus(model_args, data_args, training_args) as corpus:
        tokenizer, _ = build_vocabulary(build_tokenizer(model_args), model_args, training_args, corpus)
        return tokenizer, build_dataset(tokenizer, model_args, data_args, training_args, corpus)


def build_collator(tokenizer, data_args, training_args):
    """The `DataCollatorForPreTraining` that masks the run's batches."""
    from pipeline.collator import DataCollatorForPreTraining

    return DataCollatorForPreTraining(
        tokenizer, mlm_probability=data_args.mlm_probability, mask_replace_prob=data_args.mask_replace_prob,
        random_replace_prob=data_args.random_replace_prob, whole_word_mask=data_args.whole_word_mask,
        mask_count=data_args.mask_count, max_predictions_per_seq=data_args.max_predictions_per_seq,
        seed=training_args.seed, mlm_positions=True)


def build_eval_dataset(tokenizer, collator, dataset, model_args, data_args, training_args):
    """Held-out pairs with fixed masks; with general_eval_file, {"heldout": ..., "general": ...}; None if nothing
    is held out."""
    from pipeline.collator import fix_eval_masks

    if "validation" not in dataset:
        return None
    n = data_args.max_eval_samples
    heldout = fix_eval_masks(dataset["validation"], collator, seed=training_args.seed)
    heldout = heldout.select(range(min(n, len(heldout)))) if n is not None else heldout
    if not data_args.general_eval_file:
        return heldout
    general = _prepare(tokenizer, model_args, data_args, training_args, train_files=[data_args.general_eval_file],
                       validation_split_percentage=0, dupe_factor=1).dataset
    general = fix_eval_masks(general["train"].remove_columns("epoch"), collator, seed=training_args.seed)
    return {"heldout": heldout, "general": general.select(range(min(n, len(general)))) if n is not None else general}


def with_sentence_label(dataset, label: str):
    """The prepared data with its `next_sentence_label` column under the name the model takes (ALBERT's
    `sentence_order_label`): Trainer keeps only the columns its forward names."""
    if isinstance(dataset, dict):
        return {name: with_sentence_label(part, label) for name, part in dataset.items()}
    if dataset is None or label == "next_sentence_label" or "next_sentence_label" not in dataset.column_names:
        return dataset
    return dataset.rename_column("next_sentence_label", label)


def build_trainer(model, tokenizer, collator, data_args, training_args, *, train_dataset=None, eval_dataset=None,
                  head_training: HeadTraining | None = None, callbacks: list | None = None):
    """The `PreTrainer` of a run (or, without train_dataset, of an evaluation), with the per-head metrics."""
    from pipeline.metrics import compute_metrics, preprocess_logits_for_metrics
    from pipeline.trainer import PreTrainer

    label = model.family.sentence_label
    return PreTrainer(
        model=model, args=training_args, train_dataset=with_sentence_label(train_dataset, label),
        eval_dataset=with_sentence_label(eval_dataset, label),
        processing_class=tokenizer, data_collator=collator, head=data_args.objective,
        head_learning_rate=head_training and head_training.learning_rate,
        head_weights=head_training and head_training.weights,
        separate_head_moments=bool(head_training and head_training.separate_moments), callbacks=callbacks,
        compute_metrics=functools.partial(compute_metrics, head=data_args.objective),
        preprocess_logits_for_metrics=preprocess_logits_for_metrics)


def build_task(data_args, training_args):
    """The user's task (`TaskData`), split and checked, and the `Budget` each model is trained on it with; (None,
    None) without task_file. Built before any training, so a bad file is refused at once."""
    from pipeline.finetune import Budget
    from pipeline.task import load_task

    if not data_args.task_file:
        return None, None
    budget = Budget(mode=data_args.task_mode, seeds=data_args.task_seeds, epochs=data_args.task_epochs,
                    learning_rate=data_args.task_learning_rate, max_seq_length=data_args.max_seq_length)
    task = load_task(data_args.task_file, text_column=data_args.task_text_column,
                     text_pair_column=data_args.task_text_pair_column, label_column=data_args.task_label_column,
                     tags_column=data_args.task_tags_column,
                     split_column=data_args.task_split_column, test_percentage=data_args.task_test_percentage,
                     seed=data_seed(training_args))
    return task, budget
