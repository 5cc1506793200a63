import pytest

from pipeline.sentences import encode_documents, plain_encoder, split_sentences


@pytest.mark.parametrize("text, expected", [
    ("It rained. Then it stopped.", ["It rained.", "Then it stopped."]),
    ("Dr. Smith met Mr. Jones. They talked.", ["Dr. Smith met Mr. Jones.", "They talked."]),
    ("Use a list, e.g. a stack. It works.", ["Use a list, e.g. a stack.", "It works."]),
    ("She moved to the U.S.A. in May. It was warm.", ["She moved to the U.S.A. in May.", "It was warm."]),
    ("J. R. R. Tolkien wrote it. Many read it.", ["J. R. R. Tolkien wrote it.", "Many read it."]),
    ("Pi is 3.14159 roughly. Yes.", ["Pi is 3.14159 roughly.", "Yes."]),
    ("Call os.path.join() here. Then return.", ["Call os.path.join() here.", "Then return."]),
    ("Really? Yes! Fine.", ["Really?", "Yes!", "Fine."]),
    ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    ("(It ended.) Next came more.", ["(It ended.)", "Next came more."]),
    ("Wait... What now?", ["Wait...", "What now?"]),
    ("version 2. 3 items were left.", ["version 2.", "3 items were left."]),
    ("lower case. after a stop stays joined", ["lower case. after a stop stays joined"]),
    ("no punctuation at all", ["no punctuation at all"]),
    ("A line\nwrapped here. Next one.", ["A line\nwrapped here.", "Next one."]),
    ("", []),
    ("   ", []),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_encode_documents_chunks_overlong_sentences(tokenizer):
    long_sentence = "River " + " ".join(["river"] * 24) + "."
    out = encode_documents(["Stone water. " + long_sentence, "Tree cloud."], plain_encoder(tokenizer), max_num_tokens=10)
    first, second = out["sentences"]
    assert [len(s) for s in first] == [3, 10, 10, 6]  # 25 words + '.' cut into pieces of at most 10
    assert tokenizer.decode(first[0]) == "stone water."
    assert out["num_sentences"] == [4, 1]
    assert out["num_tokens"] == [29, 3]
    assert all(len(s) <= 10 for doc in out["sentences"] for s in doc)


def test_a_tokenizer_that_pads_or_truncates_still_gives_plain_sentences():
    from tests.conftest import make_tokenizer

    tokenizer = make_tokenizer()
    tokenizer.backend_tokenizer.enable_padding(length=32, pad_id=tokenizer.pad_token_id)
    tokenizer.backend_tokenizer.enable_truncation(max_length=3)
    out = encode_documents(["River stone water light. Tree."], plain_encoder(tokenizer), max_num_tokens=10)
    assert [len(s) for s in out["sentences"][0]] == [5, 2]
    assert tokenizer.backend_tokenizer.padding is not None  # the user's tokenizer is left as it was
