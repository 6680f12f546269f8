"""Password hashing, key hashing, tokens, the auth cache, and secret checks: no services needed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from mtai.config import Settings, secret_problem
from mtai.errors import ConfigurationError, InvalidInput, Unauthorized
from mtai.services import key_material, passwords, secrets, tokens
from mtai.services.auth_cache import AuthCache

STRONG = "k" * 8 + "Q2x9-rT7_vB4nM8pL1zW5yH3cJ6fD0sA"


async def test_password_hash_roundtrip_and_salt() -> None:
    first = await passwords.hash_password("correct horse battery")
    second = await passwords.hash_password("correct horse battery")
    assert first.startswith("$argon2id$")
    assert first != second  # salted
    assert await passwords.verify_password(first, "correct horse battery")
    assert not await passwords.verify_password(first, "correct horse battery!")
    assert not await passwords.verify_password(None, "anything")
    assert not await passwords.verify_password("not-a-hash", "anything")


def test_password_strength() -> None:
    with pytest.raises(InvalidInput):
        passwords.check_strength("short")
    with pytest.raises(InvalidInput):
        passwords.check_strength("x" * 300)
    passwords.check_strength(passwords.generate())


def test_api_key_format_and_peppered_hash() -> None:
    new = key_material.generate()
    assert new.plaintext.startswith(f"mtai_{new.prefix}_")
    assert key_material.prefix_of(new.plaintext) == new.prefix
    stored = key_material.digest("pepper-one", new.plaintext)
    assert key_material.matches("pepper-one", new.plaintext, stored)
    assert not key_material.matches("pepper-two", new.plaintext, stored)
    assert not key_material.matches("pepper-one", new.plaintext + "x", stored)
    assert new.plaintext.encode() not in stored
    assert key_material.generate().prefix != new.prefix
    for bad in ("", "mtai_", "sk-123", "mtai_abc_def", "mtai_" + "a" * 12 + "_" + "b" * 10):
        assert key_material.prefix_of(bad) is None


def test_token_roundtrip_expiry_and_tampering() -> None:
    user, tenant = uuid.uuid4(), uuid.uuid4()
    token = tokens.issue(STRONG, user_id=user, tenant_id=tenant, ttl_seconds=60, version=3)
    claims = tokens.decode(STRONG, token)
    assert (claims.user_id, claims.tenant_id, claims.version) == (user, tenant, 3)
    assert claims.expires_at > time.time()
    no_tenant = tokens.decode(
        STRONG, tokens.issue(STRONG, user_id=user, tenant_id=None, ttl_seconds=60, version=0)
    )
    assert no_tenant.tenant_id is None
    with pytest.raises(Unauthorized) as expired:
        tokens.decode(
            STRONG, tokens.issue(STRONG, user_id=user, tenant_id=None, ttl_seconds=-1, version=0)
        )
    assert expired.value.code == "token_expired"
    with pytest.raises(Unauthorized) as wrong_key:
        tokens.decode(STRONG + "x", token)
    assert wrong_key.value.code == "invalid_token"


def test_auth_cache_ttl_bound_and_negative_entries() -> None:
    cache: AuthCache[object] = AuthCache(ttl=0.05, max_entries=3, max_negative_entries=2)
    cache.put("a", 1, cache.stamp())
    cache.put("missing", None, cache.stamp())
    assert cache.get("a") == (True, 1)
    assert cache.get("missing") == (True, None)
    assert cache.get("other") == (False, None)
    time.sleep(0.06)
    assert cache.get("a") == (False, None)
    assert cache.get("missing") == (False, None)
    for key in "wxyz":
        cache.put(key, key, cache.stamp())
    assert cache.get("w") == (False, None)  # evicted: bounded
    assert cache.get("z") == (True, "z")
    for key in ("n1", "n2", "n3"):
        cache.put(key, None, cache.stamp())
    assert cache.get("n1") == (False, None)  # negative entries have their own bound...
    assert cache.get("n3") == (True, None)
    assert [cache.get(key)[0] for key in "xyz"] == [True, True, True]  # ...and evict no real one
    cache.invalidate("z")
    assert cache.get("z") == (False, None)
    disabled: AuthCache[object] = AuthCache(ttl=0)
    disabled.put("a", 1, disabled.stamp())
    assert disabled.get("a") == (False, None)


def test_auth_cache_refuses_a_read_older_than_an_invalidation_of_its_key() -> None:
    cache: AuthCache[object] = AuthCache(ttl=60, max_entries=2)
    before = cache.stamp()
    cache.invalidate("k")
    cache.put("k", "stale", before)
    assert cache.get("k") == (False, None)
    cache.put("other", "fine", before)  # another key's invalidation does not matter
    assert cache.get("other") == (True, "fine")
    cache.put("k", "fresh", cache.stamp())
    assert cache.get("k") == (True, "fresh")
    before = cache.stamp()
    cache.clear()  # the listener reconnected: anything may have changed
    cache.put("other", "stale", before)
    assert cache.get("other") == (False, None)
    before = cache.stamp()
    for key in ("a", "b", "c"):  # more invalidations than the cache remembers keys for
        cache.invalidate(key)
    cache.put("a", "stale", before)  # "a"'s record was forgotten: refused, not trusted
    assert cache.get("a") == (False, None)


@pytest.mark.parametrize("value", [None, "", "secret", "changeme", "short-but-random"])
def test_weak_secrets_are_named(value: str | None) -> None:
    assert secret_problem("X", SecretStr(value) if value is not None else None) is not None
    assert secret_problem("X", SecretStr(STRONG)) is None


def test_production_refuses_default_secrets() -> None:
    settings = Settings(_env_file=None, env="production", jwt_secret="changeme", key_pepper=None)
    with pytest.raises(ConfigurationError) as refused:
        secrets.resolve(settings)
    message = str(refused.value)
    assert "MTAI_JWT_SECRET" in message
    assert "MTAI_KEY_PEPPER" in message
    assert "changeme" not in message
    good = Settings(
        _env_file=None,
        env="production",
        jwt_secret=STRONG,
        key_pepper=STRONG[::-1],
        encryption_key=STRONG + "e",
    )
    assert secrets.resolve(good).jwt_secret == STRONG


def test_development_generates_and_keeps_secrets(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, env="development", data_dir=tmp_path)
    first = secrets.resolve(settings)
    assert len(first.jwt_secret) >= 32
    assert first.jwt_secret != first.key_pepper
    assert secrets.resolve(settings) == first  # reused across restarts
    stored = tmp_path / secrets.DEV_SECRETS_FILE
    assert stored.stat().st_mode & 0o777 == 0o600


def test_database_url_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://a@b/c")
    assert Settings(_env_file=None).database_url == "postgresql://a@b/c"
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("MTAI_DATABASE_URL", "postgresql://d@e/f")
    assert Settings(_env_file=None).database_url == "postgresql://d@e/f"


def test_history_is_trimmed_oldest_first_keeping_system_and_newest() -> None:
    from mtai.providers.llm.base import Message
    from mtai.services import tokenizer

    history = [Message("system", "You are terse.")]
    for n in range(20):
        history += [
            Message("user", f"question {n} " * 20),
            Message("assistant", f"answer {n} " * 20),
        ]
    history.append(Message("user", "the newest question"))
    budget = tokenizer.count_messages(history) // 3
    trimmed = tokenizer.trim_to_fit(history, budget)
    assert trimmed[0] == history[0]
    assert trimmed[-1] == history[-1]
    assert tokenizer.count_messages(trimmed) <= budget
    assert trimmed[1:] == history[len(history) - len(trimmed) + 1 :]  # a contiguous newest tail
    assert len(trimmed) < len(history)
    assert tokenizer.trim_to_fit(history, 10**6) == history
