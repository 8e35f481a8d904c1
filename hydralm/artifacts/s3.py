"""S3 (or any S3-compatible endpoint, e.g. SeaweedFS) as artifact storage.

A single PUT is atomic on S3: readers see the old object or the new one. Compare-and-swap uses
conditional writes (If-Match on the ETag, If-None-Match: * to create), which AWS S3 and SeaweedFS
both honour.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from hydralm.artifacts.keys import validate_key, validate_prefix
from hydralm.artifacts.storage import Storage, WriteConflictError
from hydralm.errors import ArtifactError, ConfigError, NotFoundError
from hydralm.settings import env_float, env_int, env_str

__all__ = ["S3Storage"]

log = logging.getLogger(__name__)

_MISSING = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Storage(Storage):
    """Objects under s3://bucket/prefix/. The endpoint comes from the argument, else the
    HYDRALM_S3_ENDPOINT knob, else AWS. Credentials come from boto3's usual chain. Every request
    is bounded: HYDRALM_S3_TIMEOUT_S per connect and read, HYDRALM_S3_MAX_ATTEMPTS attempts, so
    an endpoint that hangs fails a read in about attempts * timeout instead of minutes."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 client: Any | None = None) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(f"S3 bucket must be a bucket name, got {bucket!r}")
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint_url = endpoint_url or env_str("HYDRALM_S3_ENDPOINT") or None
        timeout = env_float("HYDRALM_S3_TIMEOUT_S")
        self.client = client or boto3.client(
            "s3", endpoint_url=self.endpoint_url,
            config=Config(connect_timeout=timeout, read_timeout=timeout, retries={
                "max_attempts": env_int("HYDRALM_S3_MAX_ATTEMPTS"), "mode": "standard"}))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _fail(self, action: str, key: str, exc: Exception) -> ArtifactError:
        return ArtifactError(f"S3 {action} of {key!r} in {self.uri} "
                             f"(endpoint {self.endpoint_url or 'AWS'}) failed: {exc}")

    def put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("put", key, exc) from exc

    def get(self, key: str) -> bytes:
        return self.get_versioned(key)[0]

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read(), response["ETag"]
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise NotFoundError(f"no artifact {key!r} in {self.uri}") from exc
            raise self._fail("get", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("get", key, exc) from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise self._fail("head", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("head", key, exc) from exc

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        keys = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                keys.extend(obj["Key"][len(self.prefix):] for obj in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("list", prefix, exc) from exc
        return sorted(keys)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("delete", key, exc) from exc

    def put_if(self, key: str, data: bytes, token: str | None) -> None:
        condition = {"IfNoneMatch": "*"} if token is None else {"IfMatch": token}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
        except ClientError as exc:
            if _code(exc) in _CONFLICT:
                raise WriteConflictError(f"{key!r} in {self.uri} changed since it was read "
                                         f"(expected version {token!r})") from exc
            raise self._fail("conditional put", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("conditional put", key, exc) from exc
