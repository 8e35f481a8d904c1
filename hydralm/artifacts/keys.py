"""Storage keys: validated relative paths, and user ids turned into safe, fixed-shape names.

A key is one or more '/'-separated segments of [A-Za-z0-9._=-], none empty, none starting with a
dot (so '.', '..', hidden files and the local backend's '.tmp-*' files are never keys). No user
input ever becomes a path segment: a user id is hashed (`user_token`), and the id itself is stored
inside the file and the manifest, so ids like '../x', 'a/b' or '/etc/passwd' cannot leave the
registry's prefix.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["shard_of", "user_token", "validate_key"]

_SEGMENT = re.compile(r"[A-Za-z0-9_=-][A-Za-z0-9._=-]*")
MAX_KEY_LENGTH = 1024


def validate_key(key: str) -> str:
    """Return `key` unchanged when it is a safe relative key; ValueError naming it otherwise."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"storage key must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"storage key longer than {MAX_KEY_LENGTH} characters, got {key[:40]!r}...")
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(f"invalid storage key, got {key!r}: segment {segment!r} must be "
                             "[A-Za-z0-9._=-] not starting with '.' (no '..', absolute paths, "
                             "backslashes, NUL or empty segments)")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: '' or a key, optionally ending with '/' (a key may be partial)."""
    if prefix == "":
        return prefix
    stem = prefix[:-1] if prefix.endswith("/") else prefix
    validate_key(stem)
    return prefix


def user_token(user_id: str) -> str:
    """The file-name form of a user id: the hex sha256 of its UTF-8 bytes (any string is safe)."""
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()


def shard_of(user_id: str, shards: int) -> int:
    """The index shard holding `user_id` among `shards` (the first 32 bits of its token, mod)."""
    return int(user_token(user_id)[:8], 16) % shards
