"""Training documents -> a BERT WordPiece tokenizer trained from scratch, kept in the cache by its inputs.

    bert-pretrain train --config recipes/quickstart.yaml --tokenizer_from_scratch 8000 --config_name CONFIG
"""

import hashlib
import sys
from collections.abc import Iterable

from tokenizers.implementations import BertWordPieceTokenizer
from transformers import AutoTokenizer, BertTokenizer

from pipeline.cache import find_damage, keyed_dir, read_meta, remove_stale_scratch, save_atomically

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


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


def scratch_tokenizer(texts: Iterable[str], vocab_size: int, *, lowercase: bool, cache_dir: str | None = None):
    """`train_wordpiece` on texts, saved in the cache folder its inputs name and loaded from there ever after.

    WordPiece training breaks ties between equally frequent merges differently from run to run, so
    `prepare`, `train`, a resumed run and every process must load one saved tokenizer, not retrain:
    it is keyed by the vocabulary size, the casing and a hash of the texts it was trained on. A saved one whose
    files differ from their checksums is trained again.
    """
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode() + b"\0")
    key = {"vocab_size": vocab_size, "lowercase": lowercase, "corpus": digest.hexdigest()}
    target = keyed_dir("tokenizer", key, cache_dir)
    remove_stale_scratch(target)
    saved = read_meta(target) or {}
    # One saved before checksums were recorded is kept: training again could change ids a checkpoint was trained on.
    damage = find_damage(target, saved["checksums"]) if saved.get("config") == key and "checksums" in saved else None
    if damage is not None:
        print(f"tokenizer in {target} is damaged ({damage}); training it again", file=sys.stderr)
    if saved.get("config") != key or damage is not None:
        tokenizer = train_wordpiece(texts, vocab_size, lowercase=lowercase)
        save_atomically(target, {"config": key}, tokenizer.save_pretrained)
    return AutoTokenizer.from_pretrained(target)
