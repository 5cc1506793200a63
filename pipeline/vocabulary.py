"""Tokenizer + domain words -> an extended tokenizer and embeddings; the run's vocabulary change.

    bert-pretrain vocab --config recipes/quickstart.yaml [--add_domain_tokens 200]
    bert-pretrain train --config recipes/quickstart.yaml --add_domain_tokens 200

A general-domain vocabulary cuts domain words into pieces ("descriptor" -> des ##cript ##or in WordPiece,
Ġdes cript or in byte-level BPE): longer sequences, and a meaning the model must rebuild from fragments.
Extension adds such words as whole tokens (WordPiece, BPE and Unigram tokenizers), into [unusedN] slots
first, each new embedding starting as the mean of the pieces it used to split into (random rows "give
quite poor results", transformers#2691).
"""

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer

from pipeline.errors import UsageError
from pipeline.fertility import Fertility, count_words, domain_words, fertility, word_pieces
from pipeline.wordpiece import scratch_tokenizer

_UNUSED = re.compile(r"\[unused\d+\]|<unused\d+>")


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
        if not line.strip():
            continue
        # After a space, as a word mid-sentence reads: byte-level BPE and SentencePiece mark it (Ġword, ▁word).
        text = backend.normalizer.normalize_str(" " + line.strip()) if backend.normalizer else " " + line.strip()
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


# A Unigram piece scores just above the pieces it replaces, by this much per piece saved: the word becomes one
# token exactly where its old pieces were its best split, and beats any split through a shorter new piece.
UNIGRAM_MARGIN = 1e-3


class _Extension:
    """A tokenizer.json model being extended: each word's new token takes a free [unusedN] slot's id first, then
    the next id after every id the tokenizer has."""

    def __init__(self, state: dict, next_id: int):
        self.model = state["model"]
        vocab = self.model["vocab"]
        registered = {t["content"] for t in state["added_tokens"]}
        entries = enumerate(piece for piece, _ in vocab) if isinstance(vocab, list) else \
            ((i, t) for t, i in vocab.items())
        self.slots = iter(sorted((i, t) for i, t in entries if _UNUSED.fullmatch(t) and t not in registered))
        self.next_id = next_id
        self.merges = set()

    def _new_token(self, token: str, split: list[tuple[str, int]], value=None) -> NewToken:
        token_id, slot = next(self.slots, (None, None))
        if slot is None:
            token_id, self.next_id = self.next_id, self.next_id + 1
        vocab = self.model["vocab"]
        if isinstance(vocab, list):  # Unigram: [piece, score] at index id
            if slot is None and token_id != len(vocab):
                raise UsageError("the tokenizer has tokens after its Unigram vocabulary, so a new piece cannot take "
                                 "the next id; domain tokens cannot be added to it.")
            vocab[token_id:token_id + 1] = [[token, value]]
        else:
            vocab.pop(slot, None)
            vocab[token] = token_id
        return NewToken(token, token_id, [p for p, _ in split], [i for _, i in split], slot)

    def add(self, word: str, split: list[tuple[str, int]]) -> list[NewToken]:
        """The word as one token; for BPE also the merges (and the tokens of its prefixes) that build it."""
        kind = self.model["type"]
        if kind == "WordPiece":
            return [self._new_token(word, split)]
        if kind == "Unigram":
            score = sum(self.model["vocab"][i][1] for _, i in split) + UNIGRAM_MARGIN * (len(split) - 1)
            return [self._new_token(word, split, score)]
        # BPE: merges appended after every merge the tokenizer has apply only once those have, to the word's old
        # pieces: piece 1 + piece 2, that + piece 3, ... up to the word.
        added, prefix = [], split[0][0]
        merges = self.model["merges"]
        for j, (piece, _) in enumerate(split[1:], start=2):
            if (prefix, piece) not in self.merges:
                self.merges.add((prefix, piece))
                merges.append([prefix, piece] if not merges or isinstance(merges[0], list) else f"{prefix} {piece}")
            if prefix + piece not in self.model["vocab"]:
                added.append(self._new_token(prefix + piece, split[:j]))
            prefix += piece
        return added


def extend_tokenizer(tokenizer, words: Iterable[str]):
    """A copy of the tokenizer with the words as whole tokens, filling [unusedN] slots first.

    The words go into the tokenizer's model itself, not in as added tokens, so they are found inside
    text the usual way. WordPiece: the word joins the vocabulary ("descriptor," is descriptor + ",";
    "descriptors" is descriptor + ##s). Unigram (SentencePiece): the piece scores just above the pieces it
    replaces, so it is chosen wherever they were. Byte-level BPE: merges that build the word from its old
    pieces are appended after all others, adding the word and the prefixes the merges make (`Ġdes` +
    `cript` -> `Ġdescript`, + `or` -> `Ġdescriptor`). A slot keeps its id, so its embedding row is reused;
    other tokens get new ids after every id the tokenizer has. [unusedN] entries registered as added or
    special tokens are left alone. Words already in the vocabulary are skipped, and so is a word that
    another added word's pieces would still split (checked on the new tokenizer).

    Returns:
        (the new tokenizer, of the same class with the same settings; the NewTokens in id order of addition)
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"]["type"] not in ("WordPiece", "BPE", "Unigram"):
        raise UsageError(f"the tokenizer's model is {state['model']['type']}; domain tokens can be added to "
                         "WordPiece, BPE and Unigram (SentencePiece) tokenizers only.")
    pieces = {word: word_pieces(tokenizer, word) for word in words
              if tokenizer.backend_tokenizer.token_to_id(word) is None}
    while True:
        new_state = json.loads(json.dumps(state))
        extension = _Extension(new_state, len(tokenizer))
        added = [token for word, split in pieces.items() for token in extension.add(word, split)]
        backend = Tokenizer.from_str(json.dumps(new_state))
        split_still = [word for word in pieces if [t.value for t in backend.model.tokenize(word)] != [word]]
        if not split_still:
            break
        for word in split_still:
            del pieces[word]
    # The saved files describe the old vocabulary; the class rebuilds itself around the new backend.
    kwargs = {k: v for k, v in tokenizer.init_kwargs.items()
              if k not in ("vocab", "vocab_file", "merges", "tokenizer_file", "name_or_path")}
    return type(tokenizer)(tokenizer_object=backend, **kwargs), added


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




def change_vocabulary(tokenizer, texts: Iterable[str], *, add_domain_tokens: int = 0,
                      domain_tokens_file: str | None = None, tokenizer_from_scratch: int | None = None,
                      cache_dir: str | None = None, top_k: int = 20):
    """The tokenizer a run uses: `tokenizer` extended with domain words, or one trained from scratch on texts.

    Args:
        tokenizer: The model's tokenizer.
        texts: The training documents (never the held-out ones), iterable more than once.
        add_domain_tokens: How many of the costliest split words to add (`domain_words`).
        domain_tokens_file: A file of words to add first, one per line.
        tokenizer_from_scratch: Train a WordPiece vocabulary of this size instead (`scratch_tokenizer`).
        cache_dir: Where the scratch tokenizer is kept (default: the `datasets` cache).
        top_k: How many of the most split words the fertility reports list.

    Returns:
        (tokenizer, VocabularyChange), or (tokenizer, None) when nothing is asked.
    """
    if not (add_domain_tokens or domain_tokens_file or tokenizer_from_scratch):
        return tokenizer, None
    counts = count_words(tokenizer, texts)
    before = fertility(tokenizer, counts, top_k)
    if tokenizer_from_scratch:
        lowercase = bool(getattr(tokenizer, "do_lower_case", True))
        new = scratch_tokenizer(texts, tokenizer_from_scratch, lowercase=lowercase, cache_dir=cache_dir)
        return new, VocabularyChange(before, fertility(new, count_words(new, texts), top_k), len(tokenizer),
                                     len(new), from_scratch=True)
    words = read_domain_words(domain_tokens_file, tokenizer) if domain_tokens_file else []
    picked = domain_words(tokenizer, counts, add_domain_tokens + len(words))
    words += [w for w in picked if w not in words][:add_domain_tokens]
    new, added = extend_tokenizer(tokenizer, words)
    return new, VocabularyChange(before, fertility(new, counts, top_k), len(tokenizer), len(new), added=added)
