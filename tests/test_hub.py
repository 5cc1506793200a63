"""Pushing to the Hub for real over HTTP, against a stand-in for its API on 127.0.0.1 (HF_ENDPOINT)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import make_documents
from tests.hub_standin import HubStandIn
TOKEN = "hf_standinSECRETtoken0123456789"


@pytest.mark.slow
def test_push_every_save_uploads_model_card_report_and_never_leaks_the_token(tiny_model_dir, tmp_path, root,
                                                                             subprocess_env):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_documents(60, seed=4)) + "\n")
    out = tmp_path / "run"
    with HubStandIn() as hub:
        env = {**subprocess_env, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0",
               "HF_HUB_DISABLE_TELEMETRY": "1"}
        cmd = [sys.executable, "-m", "pipeline", "train", "--model_name_or_path", tiny_model_dir,
               "--train_file", str(corpus), "--output_dir", str(out), "--max_seq_length", "48",
               "--per_device_train_batch_size", "8", "--max_steps", "4", "--save_strategy", "steps",
               "--save_steps", "2", "--push_to_hub", "true", "--hub_model_id", "tester/tiny-domain-bert",
               "--hub_strategy", "every_save", "--report_to", "none", "--disable_tqdm", "true"]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    files = hub.repos["tester/tiny-domain-bert"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "report.json", "report.png"):
        assert name in files, sorted(files)
    assert not [p for p in files if p.startswith(("dataset", "runs/", "checkpoint-"))]
    assert b"MLM loss" in files["README.md"] and files["report.png"].startswith(b"\x89PNG")
    assert open(out / "model.safetensors", "rb").read() == files["model.safetensors"]
    # every_save: a push per checkpoint (steps 2 and 4) and the final one.
    summaries = [c["summary"] for c in hub.commits]
    assert "Training in progress, step 2" in summaries and summaries[-1] == "End of training"

    # The token went only into Authorization headers ...
    authorizations = [v for r in hub.requests for k, v in r["headers"].items() if k.lower() == "authorization"]
    assert authorizations and set(authorizations) == {f"Bearer {TOKEN}"}
    assert not any(TOKEN.encode() in r["body"] for r in hub.requests)
    # ... and into no log, no written file, no uploaded file.
    assert TOKEN not in result.stdout + result.stderr
    for folder, _, names in os.walk(out):
        for name in names:
            assert TOKEN.encode() not in open(os.path.join(folder, name), "rb").read(), name
    assert not any(TOKEN.encode() in content for content in files.values())


def test_hub_token_in_a_recipe_is_refused(tmp_path):
    from pipeline.arguments import parse_args
    from pipeline.errors import UsageError

    with pytest.raises(UsageError, match="HF_TOKEN"):
        parse_args(["--output_dir", str(tmp_path), "--hub_token", TOKEN])
