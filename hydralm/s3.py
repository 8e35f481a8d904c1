"""The one way hydralm reaches S3 (AWS or an S3-compatible store such as SeaweedFS).

Two client libraries talk to S3 here: boto3 (artifact storage, the response cache) and
pyarrow.fs (datasets, training files, Ray Train checkpoints). Both are built from one
`S3Settings`, read from the knobs once by `s3_settings()`, so they reach the same endpoint with the
same timeouts and attempts:

- `HYDRALM_S3_ENDPOINT`: `http://host:port`, `https://host`, or a bare `host:port`, which means
  https for both clients (the AWS SDKs' own default). Empty: AWS itself.
- `HYDRALM_S3_TIMEOUT_S`: connect and read timeout of one request.
- `HYDRALM_S3_MAX_ATTEMPTS`: attempts per request (standard retry mode in both SDKs).

Credentials follow each SDK's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws,
instance metadata).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hydralm.errors import ConfigError
from hydralm.settings import env_float, env_int, env_str

if TYPE_CHECKING:
    import pyarrow.fs as pafs

__all__ = ["S3Endpoint", "S3Settings", "arrow_filesystem", "boto3_client", "parse_endpoint",
           "s3_settings", "split_s3_uri"]


@dataclass(frozen=True)
class S3Endpoint:
    """A validated S3 endpoint: `url` for boto3, `host` + `scheme` for pyarrow."""

    scheme: str   # "http" or "https"
    host: str     # host[:port], no path

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"


def parse_endpoint(raw: str, *, source: str = "HYDRALM_S3_ENDPOINT") -> S3Endpoint | None:
    """`raw` as an endpoint, or None when empty (AWS). A bare `host:port` means https.

    Anything else than scheme://host[:port] (another scheme, a path, a query, credentials in the
    URL, a bad port) is a ConfigError naming `source` and the value.
    """
    text = raw.strip()
    if not text:
        return None
    parts = urlsplit(text if "://" in text else f"https://{text}")
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if (parts.scheme not in ("http", "https") or not parts.hostname or not port_ok
            or parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc):
        raise ConfigError(f"{source} must look like http://host:port, https://host or host:port "
                          f"(no path or credentials), got {raw!r}")
    return S3Endpoint(scheme=parts.scheme, host=parts.netloc)


@dataclass(frozen=True)
class S3Settings:
    """Everything both S3 clients are built from."""

    endpoint: S3Endpoint | None   # None: AWS
    timeout_s: float              # per connect and per read
    max_attempts: int             # attempts per request, the first included
    region: str | None            # AWS_DEFAULT_REGION, None: the SDK's own lookup


def s3_settings() -> S3Settings:
    """The S3 knobs, read and validated (at call time, so tests may change the environment)."""
    timeout = env_float("HYDRALM_S3_TIMEOUT_S")
    if not 0 < timeout <= 3600:
        raise ConfigError(f"HYDRALM_S3_TIMEOUT_S must be in (0, 3600] seconds, got {timeout!r}")
    attempts = env_int("HYDRALM_S3_MAX_ATTEMPTS")
    if not 1 <= attempts <= 20:
        raise ConfigError(f"HYDRALM_S3_MAX_ATTEMPTS must be in [1, 20], got {attempts!r}")
    return S3Settings(endpoint=parse_endpoint(env_str("HYDRALM_S3_ENDPOINT")), timeout_s=timeout,
                      max_attempts=attempts, region=env_str("AWS_DEFAULT_REGION") or None)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix") (prefix without outer slashes)."""
    if not uri.startswith("s3://"):
        raise ConfigError(f"expected an s3://bucket/prefix URI, got {uri!r}")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ConfigError(f"S3 URI needs a bucket, got {uri!r}")
    return bucket, prefix.strip("/")


def boto3_client(settings: S3Settings | None = None) -> Any:
    """A boto3 S3 client with the endpoint, timeouts and attempts of `settings` (default: the
    knobs)."""
    import boto3
    from botocore.config import Config

    settings = settings or s3_settings()
    config = Config(connect_timeout=settings.timeout_s, read_timeout=settings.timeout_s,
                    # total_max_attempts counts the first try, like pyarrow's max_attempts
                    # (botocore's max_attempts would count retries only: one more request).
                    retries={"total_max_attempts": settings.max_attempts, "mode": "standard"})
    return boto3.client("s3", endpoint_url=settings.endpoint.url if settings.endpoint else None,
                        region_name=settings.region, config=config)


def arrow_filesystem(bucket: str, settings: S3Settings | None = None, *,
                     credentials: tuple[str, str] | None = None) -> pafs.S3FileSystem:
    """A pyarrow S3FileSystem for `bucket` with the endpoint, timeouts and attempts of `settings`.

    On AWS without a configured region, the bucket's region is looked up (as
    `FileSystem.from_uri` does). `credentials` (access key, secret key) are put into the
    filesystem itself, for one pickled to processes started without them; pyarrow does not
    pickle the retry strategy, so such a copy falls back to pyarrow's default of 3 attempts.
    """
    import pyarrow.fs as pafs

    settings = settings or s3_settings()
    options: dict[str, Any] = {
        "connect_timeout": settings.timeout_s, "request_timeout": settings.timeout_s,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=settings.max_attempts)}
    if settings.endpoint is not None:
        options["endpoint_override"] = settings.endpoint.host
        options["scheme"] = settings.endpoint.scheme
    region = settings.region or (
        pafs.resolve_s3_region(bucket) if settings.endpoint is None else None)
    if region:
        options["region"] = region
    if credentials is not None:
        options["access_key"], options["secret_key"] = credentials
    return pafs.S3FileSystem(**options)
