"""S3 (or any S3-compatible endpoint, e.g. SeaweedFS) as artifact storage.

A single PUT is atomic on S3: readers see the old object or the new one. Compare-and-swap uses
conditional writes (If-Match on the ETag, If-None-Match: * to create), which AWS S3 and SeaweedFS
both honour.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from hydralm.artifacts.keys import validate_key, validate_prefix
from hydralm.artifacts.storage import Storage, WriteConflictError
from hydralm.errors import ArtifactError, ConfigError, NotFoundError
from hydralm.s3 import boto3_client, parse_endpoint, s3_settings

__all__ = ["S3Storage"]

log = logging.getLogger(__name__)

_MISSING = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Storage(Storage):
    """Objects under s3://bucket/prefix/. The endpoint comes from the argument, else the
    HYDRALM_S3_ENDPOINT knob, else AWS; the client is `hydralm.s3.boto3_client` (every request
    bounded by HYDRALM_S3_TIMEOUT_S per connect and read and HYDRALM_S3_MAX_ATTEMPTS attempts, so
    an endpoint that hangs fails a read in about attempts * timeout instead of minutes).
    Credentials come from boto3's usual chain."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 client: Any | None = None) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(f"S3 bucket must be a bucket name, got {bucket!r}")
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        settings = s3_settings()
        if endpoint_url:
            settings = replace(settings, endpoint=parse_endpoint(endpoint_url,
                                                                 source="endpoint_url"))
        self.endpoint_url = settings.endpoint.url if settings.endpoint else None
        self.client = client or boto3_client(settings)

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
