from pipeline.features import A, B, Template, build_features, special_template
from tests.conftest import make_tokenizer


def test_template_is_read_from_the_tokenizer():
    tokenizer = make_tokenizer()
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert special_template(tokenizer) == Template((cls, A, sep), (0, 0, 0), (cls, A, sep, B, sep), (0, 0, 0, 1, 1))


def test_build_features_pair_and_single_segment():
    template = special_template(make_tokenizer())  # [CLS] = 2, [SEP] = 3
    out = build_features([([5, 6], [7], 1, True), ([8], [9, 10], 0, False)], template=template).to_pydict()
    assert out["input_ids"] == [[2, 5, 6, 3, 7, 3], [2, 8, 3, 9, 10, 3]]
    assert out["token_type_ids"] == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1]]
    assert out["next_sentence_label"] == [1, 0]
    assert out["truncated"] == [True, False]
    assert out["length"] == [6, 6]

    mlm = build_features([([5, 6, 7], [], -1, False)], template=template).to_pydict()
    assert mlm["input_ids"] == [[2, 5, 6, 7, 3]] and mlm["token_type_ids"] == [[0] * 5]
    assert "next_sentence_label" not in mlm


def test_a_doubled_separator_and_one_token_type():
    """RoBERTa's `<s> A </s></s> B </s>`, all of type 0."""
    roberta = Template((0, A, 2), (0, 0, 0), (0, A, 2, 2, B, 2), (0,) * 6)
    assert roberta.num_special(True) == 4 and roberta.num_special(False) == 2
    out = build_features([([5, 6], [7], 0, False), ([8], [], -1, False)], template=roberta).to_pydict()
    assert out["input_ids"] == [[0, 5, 6, 2, 2, 7, 2], [0, 8, 2]]
    assert out["token_type_ids"] == [[0] * 7, [0] * 3] and out["length"] == [7, 3]
