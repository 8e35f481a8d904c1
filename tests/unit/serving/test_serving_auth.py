"""API keys: stored hashed, each bound to a tenant and the users it may act for."""

from __future__ import annotations

import json

import pytest

from hydralm.errors import ConfigError
from serving.auth import Authenticator, KeyGrant, hash_key, load_key_table, table_from_keys
from serving.config import AuthConfig
from serving.errors import AuthenticationFailed, InvalidRequest, PermissionDenied

KEYS = {
    "key-acme": {"tenant": "acme", "users": ["alice", "bob"], "user_prefixes": ["acme:"]},
    "key-solo": {"tenant": "solo", "users": ["carol"]},
}


@pytest.fixture
def auth(monkeypatch) -> Authenticator:
    monkeypatch.setenv("HYDRALM_API_KEYS", table_from_keys(KEYS))
    return Authenticator(load_key_table(AuthConfig()))


def test_hash_is_sha256_hex():
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_table_holds_only_hashes(monkeypatch):
    monkeypatch.setenv("HYDRALM_API_KEYS", table_from_keys(KEYS))
    table = load_key_table(AuthConfig())
    assert set(table) == {hash_key(k) for k in KEYS}
    assert not any("key-" in digest for digest in table)


@pytest.mark.parametrize("header, code", [
    (None, "missing_api_key"),
    ("", "missing_api_key"),
    ("Bearer wrong-key", "invalid_api_key"),
    ("Basic key-acme", "invalid_api_key"),
    ("Bearer ", "invalid_api_key"),
    (f"Bearer {hash_key('key-acme')}", "invalid_api_key"),  # the digest is not a key
])
def test_bad_keys_are_401(auth, header, code):
    with pytest.raises(AuthenticationFailed) as info:
        auth.grant(header)
    assert info.value.code == code and info.value.status == 401
    assert "key-acme" not in str(info.value)


@pytest.mark.parametrize("key, user, expected", [
    ("key-acme", "alice", "alice"),
    ("key-acme", "acme:zed", "acme:zed"),
    ("key-solo", None, "carol"),  # a key with one user needs no `user`
    ("key-solo", "carol", "carol"),
])
def test_allowed_users(auth, key, user, expected):
    identity = auth.identify(auth.grant(f"Bearer {key}"), user)
    assert identity.user == expected


@pytest.mark.parametrize("key, user", [
    ("key-acme", "carol"),  # another tenant's user
    ("key-solo", "alice"),
    ("key-acme", "acmex"),  # prefix 'acme:' does not cover 'acmex'
    ("key-solo", "carol2"),
])
def test_a_key_cannot_act_for_other_users(auth, key, user):
    with pytest.raises(PermissionDenied) as info:
        auth.identify(auth.grant(f"Bearer {key}"), user, param="user_id")
    assert info.value.status == 403 and info.value.param == "user_id"


def test_several_users_need_an_explicit_user(auth):
    with pytest.raises(InvalidRequest) as info:
        auth.identify(auth.grant("Bearer key-acme"), None)
    assert info.value.param == "user"


def test_without_keys_the_request_names_the_user(monkeypatch):
    monkeypatch.delenv("HYDRALM_API_KEYS", raising=False)
    auth = Authenticator(load_key_table(AuthConfig()))
    assert not auth.enabled and auth.grant("Bearer anything") is None
    assert auth.identify(None, "dave").user == "dave"
    with pytest.raises(InvalidRequest):
        auth.identify(None, None)


def test_keys_file_json_and_yaml(tmp_path):
    digest = hash_key("k1")
    (tmp_path / "keys.json").write_text(json.dumps({digest: {"tenant": "t", "users": ["u"]}}))
    (tmp_path / "keys.yaml").write_text(f"{digest}:\n  tenant: t\n  user_prefixes: ['t:']\n")
    assert load_key_table(AuthConfig(keys_file=str(tmp_path / "keys.json")))[digest].users == ["u"]
    grant = load_key_table(AuthConfig(keys_file=str(tmp_path / "keys.yaml")))[digest]
    assert grant.allows("t:x") and not grant.allows("u")


@pytest.mark.parametrize("table, match", [
    ({"plaintext-key": {"tenant": "t", "users": ["u"]}}, "sha256 hex digest"),
    ({hash_key("a"): {"tenant": "t"}}, "allows no user"),
    ({hash_key("a"): {"tenant": "t", "user_prefixes": [""]}}, "empty prefix"),
    ({hash_key("a"): {"tenant": "t", "users": ["u"], "admin": True}}, "admin"),
    ({hash_key("a"): {"tenant": "t1", "users": ["u"]},
      hash_key("b"): {"tenant": "t2", "users": ["u"]}}, "must not overlap"),
    ({hash_key("a"): {"tenant": "t1", "user_prefixes": ["ac"]},
      hash_key("b"): {"tenant": "t2", "user_prefixes": ["acme:"]}}, "must not overlap"),
    ({hash_key("a"): {"tenant": "t1", "user_prefixes": ["acme:"]},
      hash_key("b"): {"tenant": "t2", "users": ["acme:bob"]}}, "must not overlap"),
    (["not", "a", "mapping"], "must be a mapping"),
])
def test_bad_tables_are_config_errors(monkeypatch, table, match):
    monkeypatch.setenv("HYDRALM_API_KEYS", json.dumps(table))
    with pytest.raises(ConfigError, match=match) as info:
        load_key_table(AuthConfig())
    assert "plaintext-key" not in str(info.value)


def test_one_tenant_may_hold_several_keys_for_the_same_users(monkeypatch):
    monkeypatch.setenv("HYDRALM_API_KEYS", json.dumps({
        hash_key("a"): {"tenant": "t", "users": ["u"]},
        hash_key("b"): {"tenant": "t", "users": ["u"]}}))
    assert len(load_key_table(AuthConfig())) == 2


def test_required_keys(monkeypatch, tmp_path):
    monkeypatch.delenv("HYDRALM_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match="auth.required"):
        load_key_table(AuthConfig(required=True))
    with pytest.raises(ConfigError, match="not found"):
        load_key_table(AuthConfig(keys_file=str(tmp_path / "absent.json")))


def test_grant_default_user():
    assert KeyGrant(tenant="t", users=["u"]).default_user() == "u"
    assert KeyGrant(tenant="t", users=["u"], user_prefixes=["p"]).default_user() is None
    assert KeyGrant(tenant="t", users=["u", "v"]).default_user() is None
