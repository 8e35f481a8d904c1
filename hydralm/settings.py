"""Every environment knob and tunable default in one place, each documented.

Read through the functions below, never `os.environ` elsewhere, so `hydralm env` (and the docs) can
list them all. Values are read at call time, so tests may monkeypatch the environment.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KNOBS", "Knob", "env_float", "env_int", "env_str", "home_dir", "loopback_ray"]


@dataclass(frozen=True)
class Knob:
    name: str
    default: str
    doc: str


KNOBS: dict[str, Knob] = {k.name: k for k in [
    Knob("HYDRALM_HOME", ".hydralm",
         "Working directory for local state: prepared models, caches, demo runs, registries."),
    Knob("HYDRALM_LOG_LEVEL", "INFO", "Log level of hydralm's module loggers."),
    Knob("HYDRALM_LOG_FILE", "",
         "The log file of a job command (labels, train, fit-users, eval, demo), where Ray's, "
         "Ray Data's and vLLM's output goes unless --verbose; empty: a new file under "
         "$HYDRALM_HOME/logs. The demo sets it for the stages it starts."),
    Knob("HYDRALM_GENERATOR_BASE_URL", "",
         "OpenAI-compatible base URL of an external generator (overrides the config's)."),
    Knob("HYDRALM_GENERATOR_API_KEY", "",
         "API key for the external generator (never logged). OPENAI_API_KEY is read too."),
    Knob("OPENAI_API_KEY", "",
         "Fallback API key for the external generator when HYDRALM_GENERATOR_API_KEY is empty."),
    Knob("HYDRALM_S3_ENDPOINT", "",
         "S3 endpoint for every s3:// path, boto3 and pyarrow alike (hydralm/s3.py): "
         "http://host:port, https://host, or a bare host:port (https); empty means AWS."),
    Knob("HYDRALM_S3_TIMEOUT_S", "10",
         "Every S3 client (artifacts, response cache, data and training files): connect and read "
         "timeout of one request in seconds, so an endpoint that hangs fails the read instead of "
         "blocking it (botocore's default is 60)."),
    Knob("HYDRALM_S3_MAX_ATTEMPTS", "3",
         "Every S3 client: attempts per request, the first included (standard retry mode)."),
    Knob("AWS_ACCESS_KEY_ID", "",
         "S3 credentials (read by boto3 and pyarrow); training jobs forward the AWS_* knobs and "
         "HYDRALM_S3_ENDPOINT to their Ray workers so s3:// paths work there too."),
    Knob("AWS_SECRET_ACCESS_KEY", "", "S3 secret key (see AWS_ACCESS_KEY_ID); never logged."),
    Knob("AWS_DEFAULT_REGION", "", "S3 region (see AWS_ACCESS_KEY_ID)."),
    Knob("HYDRALM_NUM_THREADS", "0",
         "torch intra-op threads for encoders (0 leaves torch's default)."),
    Knob("HYDRALM_HISTORY_DSN", "",
         "History store on PostgreSQL (history_backend: postgres): libpq connection string or "
         "URI, e.g. 'host=db port=5432 dbname=hydralm user=hydralm'; never logged. Empty: "
         "HYDRALM_HISTORY_DSN_FILE, else libpq's own PGHOST, PGPORT, PGUSER, PGPASSWORD, "
         "PGDATABASE, PGPASSFILE and PGSSLMODE variables."),
    Knob("HYDRALM_HISTORY_DSN_FILE", "",
         "File holding the PostgreSQL connection string (a mounted Kubernetes Secret), read when "
         "HYDRALM_HISTORY_DSN is empty."),
    Knob("HYDRALM_HISTORY_POOL_MIN", "1",
         "History store on PostgreSQL: connections each process keeps open."),
    Knob("HYDRALM_HISTORY_POOL_MAX", "8",
         "History store on PostgreSQL: most connections one process opens (each ingress replica "
         "and job has its own pool; keep replicas x max under the server's max_connections)."),
    Knob("HYDRALM_HISTORY_TIMEOUT_S", "5",
         "History store on PostgreSQL: longest wait for a connection (connect, or a free pooled "
         "one) and for one statement, in seconds; beyond it the request fails with 503."),
    Knob("HYDRALM_API_KEYS", "",
         "Serving: JSON {sha256(key): {tenant, users, user_prefixes}} of accepted API keys, "
         "read when auth.keys_file is unset; both empty disable the key check."),
]}


def env_str(name: str) -> str:
    knob = KNOBS[name]
    return os.environ.get(name, knob.default)


def env_int(name: str) -> int:
    raw = env_str(name)
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def env_float(name: str) -> float:
    raw = env_str(name)
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from exc


def home_dir() -> Path:
    """The local state directory (created on first use)."""
    path = Path(env_str("HYDRALM_HOME")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


LOOPBACK_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def loopback_ray() -> None:
    """Make the local Ray about to start bind 127.0.0.1 only (call right before `ray.init()`
    starts one; never before joining a cluster, whose nodes must reach each other).

    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` does it, but Ray reads it once, when `ray` is first
    imported: set in the environment (for the processes Ray starts) and, when Ray is already
    imported, in its constants too. An explicit value in the environment wins. No Ray import here:
    the library stays free of Ray.
    """
    os.environ.setdefault(LOOPBACK_VAR, "0")
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = os.environ[LOOPBACK_VAR].strip().lower() in (
            "1", "true", "yes", "on")
