"""Checkpoints and the registry on a real S3 server (SeaweedFS on loopback): Ray Train writes its
checkpoints to s3://, the job publishes and fits into an s3:// registry, and a fresh process loads
it from there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fixtures_s3 import s3_server  # noqa: F401  (module-scoped SeaweedFS fixture)
from s3_server import ACCESS_KEY, REGION, SECRET_KEY
from training_fixtures import build_tiny_encoder, tiny_job, write_fake_labels

from hydralm.artifacts import Registry
from training.stages import fit_stage, train_stage
from training.users import load_split

pytestmark = pytest.mark.integration

LOAD_SCRIPT = """
import json, sys
from hydralm.artifacts import Registry
from hydralm.model import HeadBank, HydraModel
from hydralm.scoring.bundle import load_bundle_encoders
registry = Registry(sys.argv[1])
version = registry.base_version()
encoder = load_bundle_encoders(registry, ["reranker"], version)["reranker"]
users = json.loads(sys.argv[2])
heads = [registry.load_head("reranker", u) for u in users] + [registry.load_global_head("reranker")]
model = HydraModel(encoder, HeadBank.from_states(heads, dropout=0.0))
scores = model.score(["a query"] * len(heads), ["an item"] * len(heads), list(range(len(heads))))
print(json.dumps({"version": version, "scores": scores.tolist(), "problems": registry.verify()}))
"""


@pytest.fixture(scope="module", autouse=True)
def s3_credentials():
    """Credentials in the environment before SeaweedFS starts: `weed mini` then enables auth
    with them. Without auth it rejects the signed multipart uploads of pyarrow's S3 client,
    which Ray Train checkpoints with (boto3's single PUTs pass either way)."""
    mp = pytest.MonkeyPatch()
    for name, value in (("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
                        ("AWS_DEFAULT_REGION", REGION)):
        mp.setenv(name, value)
    yield
    mp.undo()


def test_checkpoints_and_registry_on_s3(ray_local, s3_server, tmp_path, monkeypatch):  # noqa: F811
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = s3_server.make_bucket()
    encoder = build_tiny_encoder(tmp_path / "encoder")
    cfg = tiny_job(tmp_path / "job", encoder, registry=f"s3://{bucket}/registry",
                   train={"storage_path": f"s3://{bucket}/checkpoints", "run_name": "on-s3"})
    write_fake_labels(cfg)
    summary = train_stage(cfg, ["reranker"], progress=False)
    fit = fit_stage(cfg, ["reranker"], progress=False)
    assert fit["models"][0]["fitted"] == 2

    keys = [o["Key"] for o in s3_server.client().list_objects_v2(
        Bucket=bucket, Prefix="checkpoints/on-s3-reranker/").get("Contents", [])]
    assert any(k.endswith("/state.pt") for k in keys), keys
    assert summary["models"][0]["checkpoint"].startswith(f"{bucket}/checkpoints/on-s3-reranker")

    split = load_split(cfg)
    users = list(split.train) + list(split.test)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, f"s3://{bucket}/registry", json.dumps(users)],
        capture_output=True, text=True, timeout=300, env={**os.environ, **s3_server.env()})
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["version"] == Registry(cfg.paths.registry).base_version()
    assert loaded["problems"] == [] and len(loaded["scores"]) == len(users) + 1
    assert all(0.0 <= s <= 1.0 for s in loaded["scores"])
