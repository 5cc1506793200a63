from pipeline.features import build_features


def test_build_features_pair_and_single_segment():
    out = build_features([([5, 6], [7], 1, True), ([8], [9, 10], 0, False)], cls_token_id=2, sep_token_id=3).to_pydict()
    assert out["input_ids"] == [[2, 5, 6, 3, 7, 3], [2, 8, 3, 9, 10, 3]]
    assert out["token_type_ids"] == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1]]
    assert out["next_sentence_label"] == [1, 0]
    assert out["truncated"] == [True, False]
    assert out["length"] == [6, 6]

    mlm = build_features([([5, 6, 7], [], -1, False)], cls_token_id=2, sep_token_id=3).to_pydict()
    assert mlm["input_ids"] == [[2, 5, 6, 7, 3]] and mlm["token_type_ids"] == [[0] * 5]
    assert "next_sentence_label" not in mlm
