"""Corpus + tokenizer -> fertility report, domain words, and an extended or from-scratch tokenizer.

    bert-pretrain vocab --config recipes/quickstart.yaml [--add_domain_tokens 200]
    bert-pretrain train --config recipes/quickstart.yaml --add_domain_tokens 200
    bert-pretrain train --config recipes/quickstart.yaml --tokenizer_from_scratch 8000 --config_name CONFIG

A general-domain WordPiece vocabulary cuts domain words into pieces ("descriptor" -> des ##cript ##or):
longer sequences, and a meaning the model must rebuild from fragments. Extension adds such words as
whole tokens, into BERT's [unusedN] slots first, each new embedding starting as the mean of the
pieces it used to split into (random rows "give quite poor results", transformers#2691).
"""

import hashlib
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer
from transformers import AutoTokenizer, BertTokenizer

from pipeline.corpus import check_text_files, load_documents, resolve_train_files
from pipeline.errors import UsageError
from pipeline.prepare import split_documents

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_UNUSED = re.compile(r"\[unused\d+\]")
SCRATCH_DIR = "scratch-tokenizer"  # in output_dir: the from-scratch tokenizer, trained once per corpus
_SCRATCH_KEY = "scratch.json"


def count_words(tokenizer, texts: Iterable[str]) -> Counter[str]:
    """How often each word occurs, words being what the tokenizer's normalizer and pre-tokenizer make of the text.

    Whitespace-separated chunks are counted first and each distinct chunk normalized once: BERT's
    normalizer and pre-tokenizer never join text across whitespace, so the words are the same, and
    this is about 6x faster than normalizing every document.
    """
    chunks = Counter()
    for text in texts:
        chunks.update(text.split())
    backend = tokenizer.backend_tokenizer
    words = Counter()
    for chunk, n in chunks.items():
        if backend.normalizer is not None:
            chunk = backend.normalizer.normalize_str(chunk)
        pieces = backend.pre_tokenizer.pre_tokenize_str(chunk) if backend.pre_tokenizer else [(chunk, None)]
        for word, _ in pieces:
            words[word] += n
    return words


def word_pieces(tokenizer, word: str) -> list[tuple[str, int]]:
    """(piece, id) for one normalized, pre-tokenized word, straight from the WordPiece model."""
    return [(t.value, t.id) for t in tokenizer.backend_tokenizer.model.tokenize(word)]


@dataclass
class Fertility:
    """How well a tokenizer fits a corpus, counted over word occurrences."""

    words: int
    distinct_words: int
    pieces: int
    unknown: int  # words encoded as [UNK] (WordPiece gives a whole word [UNK] if any character is unknown)
    split_3plus: int  # words in 3 or more pieces
    most_split: list[dict] = field(default_factory=list)  # {"word", "count", "pieces"}, most frequent first

    @property
    def pieces_per_word(self) -> float:
        return self.pieces / self.words if self.words else 0.0

    @property
    def unk_rate(self) -> float:
        return self.unknown / self.words if self.words else 0.0

    @property
    def split_3plus_rate(self) -> float:
        return self.split_3plus / self.words if self.words else 0.0

    def to_dict(self) -> dict:
        return {"pieces_per_word": self.pieces_per_word, "unk_rate": self.unk_rate,
                "split_3plus_rate": self.split_3plus_rate, **asdict(self)}


def fertility(tokenizer, word_counts: Counter[str], top_k: int = 20) -> Fertility:
    """Word-pieces per word, [UNK] rate, and the most frequent words split into 3 or more pieces.

    Args:
        tokenizer: A fast WordPiece tokenizer.
        word_counts: From `count_words` with this tokenizer (or one that normalizes the same way).
        top_k: How many of the most frequent 3+-piece words to list.
    """
    unk = tokenizer.unk_token
    pieces, unknown, split_3plus, most_split = 0, 0, 0, []
    for word, n in sorted(word_counts.items(), key=lambda item: (-item[1], item[0])):
        split = [p for p, _ in word_pieces(tokenizer, word)]
        pieces += n * len(split)
        unknown += n * (unk in split)
        if len(split) >= 3:
            split_3plus += n
            if len(most_split) < top_k:
                most_split.append({"word": word, "count": n, "pieces": split})
    return Fertility(words=sum(word_counts.values()), distinct_words=len(word_counts), pieces=pieces,
                     unknown=unknown, split_3plus=split_3plus, most_split=most_split)


def domain_words(tokenizer, word_counts: Counter[str], n: int, min_count: int = 2) -> list[str]:
    """The n words whose becoming one token saves the most pieces over the corpus.

    The score is count x (pieces - 1), the pieces saved: a frequent word in 2 pieces and a rarer
    one in 5 can both be worth a token. Ties go to the alphabetically first word, so every rank and
    rerun picks the same. Left out: words seen fewer than min_count times (too few examples to learn
    an embedding from), words without a letter (numbers, punctuation runs), and words encoded as
    [UNK] (no pieces to start the embedding from).
    """
    scored = []
    for word, count in word_counts.items():
        if count < min_count or not any(c.isalpha() for c in word):
            continue
        split = [p for p, _ in word_pieces(tokenizer, word)]
        if len(split) >= 2 and tokenizer.unk_token not in split:
            scored.append((-count * (len(split) - 1), word))
    return [word for _, word in sorted(scored)[:n]]


def read_domain_words(path: str, tokenizer) -> list[str]:
    """Words from a file, one per line, normalized as the tokenizer normalizes text (lower-cased if uncased)."""
    if not os.path.isfile(path):
        raise UsageError(f"domain_tokens_file {path} is not a file; give a text file with one word per line.")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"domain_tokens_file {path} is not UTF-8 text; convert it to UTF-8.") from None
    backend, words = tokenizer.backend_tokenizer, []
    for line in lines:
        text = backend.normalizer.normalize_str(line.strip()) if backend.normalizer else line.strip()
        if not text:
            continue
        split = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(text)]
        if len(split) != 1:
            raise UsageError(f"'{line.strip()}' in {path} is {len(split)} words to this tokenizer "
                             f"({' '.join(split)}); list single words, one per line.")
        words.append(split[0])
    return words


@dataclass
class NewToken:
    """A word added to the vocabulary, and how the tokenizer split it before."""

    token: str
    id: int
    pieces: list[str]
    piece_ids: list[int]
    slot: str | None  # the [unusedN] entry it replaced; None if appended


def extend_tokenizer(tokenizer, words: Iterable[str]):
    """A copy of the tokenizer with the words as whole tokens, filling [unusedN] slots first.

    The words go into the WordPiece vocabulary itself, not in as added tokens, so they are found
    inside text the usual way ("descriptor," is descriptor + ","; "descriptors" is descriptor + ##s).
    A slot keeps its id, so its embedding row is reused; words beyond the free slots get new ids
    after every id the tokenizer has. [unusedN] entries registered as added or special tokens are
    left alone. Words already in the vocabulary are skipped.

    Returns:
        (the new tokenizer, of the same class with the same settings; the NewTokens in id order of addition)
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"]["type"] != "WordPiece":
        raise UsageError(f"the tokenizer is {state['model']['type']}, not WordPiece; domain tokens need a BERT "
                         "(WordPiece) tokenizer, or use --tokenizer_from_scratch.")
    vocab = state["model"]["vocab"]
    registered = {t["content"] for t in state["added_tokens"]}
    slots = iter(sorted((i, t) for t, i in vocab.items() if _UNUSED.fullmatch(t) and t not in registered))
    next_id = len(tokenizer)
    added = []
    for word in words:
        if word in vocab:
            continue
        split = word_pieces(tokenizer, word)
        token_id, slot = next(slots, (None, None))
        if slot is None:
            token_id, next_id = next_id, next_id + 1
        else:
            del vocab[slot]
        vocab[word] = token_id
        added.append(NewToken(word, token_id, [p for p, _ in split], [i for _, i in split], slot))
    # The saved files describe the old vocabulary; the class rebuilds itself around the new backend.
    kwargs = {k: v for k, v in tokenizer.init_kwargs.items()
              if k not in ("vocab", "vocab_file", "merges", "tokenizer_file", "name_or_path")}
    return type(tokenizer)(tokenizer_object=Tokenizer.from_str(json.dumps(state)), **kwargs), added


def init_new_embeddings(model, new_tokens: list[NewToken], vocab_size: int) -> None:
    """Grows the embeddings to vocab_size if needed and starts each new token at the mean of its old pieces.

    Input embedding rows, MLM decoder rows (unless tied to the inputs, as in BERT) and the MLM output
    bias all get the mean over the pieces the word used to split into. Resizing keeps the decoder tied.
    """
    if vocab_size > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)  # rows are set below
    if not new_tokens:
        return
    decoder = model.get_output_embeddings()
    params = [model.get_input_embeddings().weight, decoder.weight, decoder.bias]
    params = [p for k, p in enumerate(params) if p is not None and all(p is not q for q in params[:k])]
    ids = torch.tensor([t.id for t in new_tokens])
    with torch.no_grad():
        for param in params:
            param[ids] = torch.stack([param[t.piece_ids].mean(0) for t in new_tokens])


def extend_vocabulary(tokenizer, model, words: Iterable[str]):
    """Adds the words to the tokenizer and the model (see `extend_tokenizer` and `init_new_embeddings`).

    Returns:
        (the new tokenizer, the model resized in place, the NewTokens)
    """
    tokenizer, added = extend_tokenizer(tokenizer, words)
    init_new_embeddings(model, added, len(tokenizer))
    return tokenizer, model, added


def train_wordpiece(texts: Iterable[str], vocab_size: int, *, lowercase: bool = True) -> BertTokenizer:
    """A BERT WordPiece tokenizer trained on texts with the `tokenizers` library.

    Its normalizer, pre-tokenizer and special tokens ([PAD] [UNK] [CLS] [SEP] [MASK], ids 0-4) are
    BERT's, and training keeps the library's BERT defaults (pieces seen at least twice, an alphabet of
    at most 1,000 characters), so the vocabulary may come out smaller than vocab_size on a small
    corpus. It comes back as a `BertTokenizer`, as any BERT checkpoint's does.
    """
    trainer = BertWordPieceTokenizer(lowercase=lowercase)
    trainer.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    return BertTokenizer(vocab=trainer.get_vocab(), do_lower_case=lowercase)


@dataclass
class VocabularyChange:
    """What a run did to the vocabulary, with fertility on the training documents before and after."""

    before: Fertility
    after: Fertility
    vocab_size_before: int
    vocab_size: int
    from_scratch: bool = False
    added: list[NewToken] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"from_scratch": self.from_scratch, "vocab_size_before": self.vocab_size_before,
                "vocab_size": self.vocab_size, "added": len(self.added),
                "into_unused": sum(t.slot is not None for t in self.added),
                "appended": sum(t.slot is None for t in self.added),
                "before": self.before.to_dict(), "after": self.after.to_dict(),
                "added_tokens": [asdict(t) for t in self.added]}


def format_fit(before: Fertility, change: VocabularyChange | None = None) -> str:
    """The `vocab` command's report: fertility (before and after a change), 3+-piece words, added words."""
    columns = {"before": before, "after": change.after} if change else {"tokenizer": before}
    rows = [("word-pieces per word", lambda f: f"{f.pieces_per_word:.3f}"),
            ("[UNK] rate", lambda f: f"{f.unk_rate:.2%}"),
            ("words in 3+ pieces", lambda f: f"{f.split_3plus_rate:.1%}")]
    lines = [f"Tokenizer fit on the training documents: {before.words:,} words, {before.distinct_words:,} distinct",
             f"{'':<22}" + "".join(f"{name:>11}" for name in columns)]
    lines += [f"{label:<22}" + "".join(f"{fmt(f):>11}" for f in columns.values()) for label, fmt in rows]
    if change:
        lines.append(f"{'vocabulary':<22}{change.vocab_size_before:>11,}{change.vocab_size:>11,}")
    lines += ["", "Most frequent words in 3+ pieces" + (" (before)" if change else "") + ":",
              f"  {'count':>7}  {'word':<24} pieces"]
    lines += [f"  {w['count']:>7,}  {w['word']:<24} {' '.join(w['pieces'])}" for w in before.most_split]
    if change and change.added:
        report = change.to_dict()
        lines += ["", f"Domain tokens to add: {report['added']:,} ({report['into_unused']:,} into [unused] slots, "
                      + f"{report['appended']:,} appended), most pieces saved first:", " "]
        for t in change.added:  # several words a line, never broken inside one
            item = f" {t.token} ({' '.join(t.pieces)}),"
            if len(lines[-1]) + len(item) > 110:
                lines.append(" ")
            lines[-1] += item
        lines[-1] = lines[-1].rstrip(",")
    return "\n".join(lines)


def training_texts(model_args, data_args, training_args) -> Iterable[str]:
    """The training documents' texts: the corpus less the documents `prepare` holds out (same split, same seed).

    A lazy column of the Arrow table: each pass over it reads the documents in batches, never all at once.
    """
    files = (resolve_train_files(data_args.train_file, model_args.cache_dir)
             if data_args.train_file and not data_args.dataset_name else [])
    check_text_files(files)
    documents = load_documents(files, document_format=data_args.document_format, text_column=data_args.text_column,
                               dataset_name=data_args.dataset_name, dataset_config_name=data_args.dataset_config_name,
                               cache_dir=model_args.cache_dir)
    seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    return split_documents(documents, data_args.validation_split_percentage, seed)["train"]["text"]


def scratch_tokenizer(texts: Iterable[str], vocab_size: int, *, lowercase: bool, directory: str, key: dict):
    """`train_wordpiece`, saved in directory and reused while `key` (what it was trained from) is unchanged.

    WordPiece training breaks ties between equally frequent merges differently from run to run, so
    `prepare`, `train`, a resumed run and every process must load one saved tokenizer, not retrain.
    """
    saved = Path(directory) / _SCRATCH_KEY
    if saved.is_file() and json.loads(saved.read_text()) == key:
        return AutoTokenizer.from_pretrained(directory)
    tokenizer = train_wordpiece(texts, vocab_size, lowercase=lowercase)
    tmp = Path(f"{directory}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(tmp)
    (tmp / _SCRATCH_KEY).write_text(json.dumps(key))
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return tokenizer


def vocabulary_from_args(tokenizer, model_args, data_args, training_args, top_k: int = 20):
    """The tokenizer the run uses: the model's (`tokenizer`), extended with domain words, or trained from scratch.

    Returns:
        (tokenizer, VocabularyChange or None when the vocabulary is the model's own)
    """
    if not (model_args.add_domain_tokens or model_args.domain_tokens_file or model_args.tokenizer_from_scratch):
        return tokenizer, None
    # The main process reads the corpus (and trains a scratch tokenizer) first; the others reuse its work.
    with training_args.main_process_first(local=False, desc="vocabulary"):
        texts = training_texts(model_args, data_args, training_args)
        counts = count_words(tokenizer, texts)
        before = fertility(tokenizer, counts, top_k)
        if model_args.tokenizer_from_scratch:
            lowercase = bool(getattr(tokenizer, "do_lower_case", True))
            digest = hashlib.sha256()
            for text in texts:
                digest.update(text.encode() + b"\0")
            corpus = digest.hexdigest()
            key = {"vocab_size": model_args.tokenizer_from_scratch, "lowercase": lowercase, "corpus": corpus}
            new = scratch_tokenizer(texts, model_args.tokenizer_from_scratch, lowercase=lowercase,
                                    directory=os.path.join(training_args.output_dir, SCRATCH_DIR), key=key)
            return new, VocabularyChange(before, fertility(new, count_words(new, texts), top_k), len(tokenizer),
                                         len(new), from_scratch=True)
    words = read_domain_words(model_args.domain_tokens_file, tokenizer) if model_args.domain_tokens_file else []
    picked = domain_words(tokenizer, counts, model_args.add_domain_tokens + len(words))
    words += [w for w in picked if w not in words][:model_args.add_domain_tokens]
    new, added = extend_tokenizer(tokenizer, words)
    return new, VocabularyChange(before, fertility(new, counts, top_k), len(tokenizer), len(new), added=added)
