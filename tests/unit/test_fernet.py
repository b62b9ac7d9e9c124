from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import InvalidToken

from control.common import db, errors
from control.identity.fernet import KeyRepository, KeyRepositoryError
from control.identity.tokens import TokenData, TokenProvider


def test_setup_creates_private_staged_and_primary_keys(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path / "keys")
    assert repo.setup() is True
    assert repo.setup() is False
    assert sorted(p.name for p in repo.path.iterdir()) == ["0", "1"]
    assert stat.S_IMODE(repo.path.stat().st_mode) == 0o700
    for key in repo.path.iterdir():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_rotation_keeps_old_tokens_valid_until_their_key_is_pruned(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path / "keys", max_active_keys=3)
    repo.setup()
    first = repo.encrypt(b"one")
    assert repo.rotate() == 2
    assert sorted(p.name for p in repo.path.iterdir()) == ["0", "1", "2"]
    assert repo.decrypt(first) == b"one"
    second = repo.encrypt(b"two")
    assert repo.rotate() == 3
    assert sorted(p.name for p in repo.path.iterdir()) == ["0", "2", "3"]
    assert repo.decrypt(second) == b"two"
    with pytest.raises(InvalidToken):
        repo.decrypt(first)


def test_a_staged_key_from_another_node_is_accepted(tmp_path: Path) -> None:
    """A controller that rotated first signs with what the others still hold as staged."""
    repo = KeyRepository(tmp_path / "a")
    repo.setup()
    other = KeyRepository(tmp_path / "b")
    other.path.mkdir(mode=0o700)
    for name in ("0", "1"):
        (other.path / name).write_bytes((repo.path / name).read_bytes())
    repo.rotate()  # node a promotes its staged key 0 to 2 and signs with it
    assert other.decrypt(repo.encrypt(b"hello")) == b"hello"


def test_rotate_without_setup_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(KeyRepositoryError, match="fernet-setup"):
        KeyRepository(tmp_path / "none").rotate()


def test_token_round_trip_and_expiry(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path / "keys")
    repo.setup()
    provider = TokenProvider(repo, expiration=60)
    token, data = provider.issue("u1", ["password"], project_id="p1")
    decoded = provider.decode(token)
    assert decoded == data
    assert len(token) < 300
    expired = TokenData(
        "u1",
        ["password"],
        None,
        None,
        db.utcnow() - timedelta(hours=2),
        db.utcnow() - timedelta(hours=1),
        ["a"],
    )
    with pytest.raises(errors.Unauthorized):
        provider.decode(repo.encrypt(expired.encode()).decode())
    with pytest.raises(errors.Unauthorized):
        provider.decode(token[:-4] + "AAAA")
