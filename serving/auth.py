"""API keys: each key (stored only as its sha256 hex digest) belongs to a tenant and may act for a
fixed set of users and/or users whose id starts with a prefix. The server decides identity: a
request names a user only within what its key allows, and a key bound to exactly one user needs no
`user` field at all. Keys never reach a log; a failed check says which user, never which key.

The key table is JSON or YAML: `{"<sha256 hex>": {"tenant": "acme", "users": ["alice"],
"user_prefixes": ["acme:"], "rate_limit": {"requests_per_s": 5, "tokens_per_min": 20000}}}`,
from `auth.keys_file` (a mounted Secret) or HYDRALM_API_KEYS; `rate_limit` is optional (default:
`auth.rate_limit`, see serving/ratelimit.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from hydralm.config import StrictModel
from hydralm.errors import ConfigError
from hydralm.settings import env_str
from serving.config import AuthConfig
from serving.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from serving.ratelimit import RateLimit

__all__ = [
    "Authenticator",
    "Identity",
    "KeyGrant",
    "hash_key",
    "load_key_table",
    "table_from_keys",
]

log = logging.getLogger(__name__)

_HEX = set("0123456789abcdef")


def hash_key(key: str) -> str:
    """The stored form of an API key: its sha256 hex digest."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyGrant(StrictModel):
    """What one API key may do."""

    tenant: str = Field(..., min_length=1, max_length=128, description="Owner of the key.")
    users: list[str] = Field(default_factory=list, max_length=100_000,
                             description="User ids the key may act for.")
    user_prefixes: list[str] = Field(
        default_factory=list, max_length=1000,
        description="The key may act for every user id starting with one of these (non-empty).")
    rate_limit: RateLimit | None = Field(
        None, description="This key's limits; None: auth.rate_limit.")
    # which key this is, for its rate-limit buckets: a prefix of its digest (set by Authenticator)
    _key_id: str = PrivateAttr("")

    @field_validator("user_prefixes")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if any(not p for p in value):
            raise ValueError("user_prefixes must not contain an empty prefix (it would allow "
                             "every user; list a real prefix)")
        return value

    @model_validator(mode="after")
    def _grants_something(self) -> KeyGrant:
        if not self.users and not self.user_prefixes:
            raise ValueError(f"the key of tenant {self.tenant!r} allows no user: give users or "
                             "user_prefixes")
        return self

    def allows(self, user_id: str) -> bool:
        return user_id in self.users or any(user_id.startswith(p) for p in self.user_prefixes)

    def default_user(self) -> str | None:
        """The user a request without `user` acts for: the key's only user, if it has one."""
        return self.users[0] if len(self.users) == 1 and not self.user_prefixes else None


@dataclass(frozen=True)
class Identity:
    """Who a request acts for (after the key check), and under which tenant (None: no auth)."""

    user: str
    tenant: str | None


def _parse_table(text: str, source: str) -> dict[str, KeyGrant]:
    try:
        raw = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: the API key table is not valid JSON/YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the API key table must be a mapping of sha256 digests, "
                          f"got {type(raw).__name__}")
    table: dict[str, KeyGrant] = {}
    for digest, grant in raw.items():
        if not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= _HEX):
            # Never echo the entry: it may be a plaintext key pasted by mistake.
            raise ConfigError(f"{source}: every key must be a lowercase sha256 hex digest (64 "
                              f"characters); entry #{len(table) + 1} is not (store "
                              "hash_key(key), never the key itself)")
        try:
            table[digest] = KeyGrant.model_validate(grant)
        except ValidationError as exc:
            raise ConfigError(f"{source}: entry for {digest[:12]}...: {exc}") from exc
    _check_tenants_disjoint(table, source)
    return table


def _check_tenants_disjoint(table: dict[str, KeyGrant], source: str) -> None:
    """Keys of different tenants must not cover a common user: then one tenant's key could act
    for another tenant's users."""
    grants = list(table.values())
    for i, a in enumerate(grants):
        for b in grants[i + 1:]:
            if a.tenant == b.tenant:
                continue
            clash = sorted({u for u in a.users if b.allows(u)} | {u for u in b.users if a.allows(u)})
            clash += [f"{p}*" for p in a.user_prefixes for q in b.user_prefixes
                      if p.startswith(q) or q.startswith(p)]
            if clash:
                raise ConfigError(f"{source}: tenants {a.tenant!r} and {b.tenant!r} both cover "
                                  f"users {clash[:5]}; tenants' users must not overlap")


def load_key_table(cfg: AuthConfig) -> dict[str, KeyGrant]:
    """The key table from `cfg.keys_file`, else HYDRALM_API_KEYS; empty when neither is set."""
    if cfg.keys_file:
        path = Path(cfg.keys_file)
        if not path.is_file():
            raise ConfigError(f"auth.keys_file not found: {path}")
        table = _parse_table(path.read_text(encoding="utf-8"), str(path))
    else:
        raw = env_str("HYDRALM_API_KEYS").strip()
        table = _parse_table(raw, "HYDRALM_API_KEYS") if raw else {}
    if cfg.required and not table:
        raise ConfigError("auth.required is true but no API keys are configured: set "
                          "auth.keys_file or HYDRALM_API_KEYS")
    return table


class Authenticator:
    """Checks the bearer key of a request and decides which user it acts for."""

    def __init__(self, table: dict[str, KeyGrant], rate_limit: RateLimit | None = None) -> None:
        self._table = dict(table)
        self._rate_limit = rate_limit or RateLimit()
        for digest, grant in self._table.items():
            grant._key_id = digest[:16]
        if not self._table:
            log.warning("no API keys configured: every request may act for any user")

    def rate_limit(self, grant: KeyGrant | None) -> tuple[str, RateLimit]:
        """The bucket id and limits of a request's key (with auth off: one shared bucket)."""
        if grant is None:
            return "anonymous", self._rate_limit
        return grant._key_id, grant.rate_limit or self._rate_limit

    @property
    def enabled(self) -> bool:
        return bool(self._table)

    def grant(self, authorization: str | None) -> KeyGrant | None:
        """The grant of the request's key; None when auth is off. 401 on a missing/unknown key."""
        if not self.enabled:
            return None
        if not authorization:
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>'",
                                       code="missing_api_key")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationFailed("the Authorization header must be 'Bearer <key>'")
        grant = self._table.get(hash_key(key.strip()))
        if grant is None:
            raise AuthenticationFailed("invalid API key")
        return grant

    def identify(self, grant: KeyGrant | None, user: str | None, *,
                 param: str = "user") -> Identity:
        """Who a request with key `grant` (from `grant()`) acts for: `user` if the key allows
        it, or the key's only user. 400 when no user can be determined, 403 when the key may not
        act for `user`."""
        if grant is None:
            if self.enabled:
                raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>'",
                                           code="missing_api_key")
            if not user:
                raise InvalidRequest(f"{param}: field required (the user to personalize for)",
                                     param=param, code="missing_field")
            return Identity(user=user, tenant=None)
        chosen = user or grant.default_user()
        if not chosen:
            raise InvalidRequest(f"{param}: field required (this API key acts for several users)",
                                 param=param, code="missing_field")
        if not grant.allows(chosen):
            raise PermissionDenied(f"this API key may not act for user {chosen!r}", param=param)
        return Identity(user=chosen, tenant=grant.tenant)


def table_from_keys(grants: dict[str, dict]) -> str:
    """JSON for HYDRALM_API_KEYS from {plaintext key: grant}: a helper for tests and docs."""
    return json.dumps({hash_key(k): v for k, v in grants.items()})
