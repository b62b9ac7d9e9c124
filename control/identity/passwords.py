"""Password hashing with bcrypt, at a cost never below Keystone's default of 12 rounds.

bcrypt reads at most 72 bytes; longer passwords are first reduced with SHA-256 (base64) so that
every byte counts. Passwords are never logged.
"""

from __future__ import annotations

import base64
import hashlib

import bcrypt

MIN_ROUNDS = 12
MAX_PASSWORD_LENGTH = 4096


def _prepare(password: str) -> bytes:
    raw = password.encode("utf-8")
    if len(raw) > 72:
        raw = base64.b64encode(hashlib.sha256(raw).digest())
    return raw


def hash_password(password: str, rounds: int = MIN_ROUNDS) -> str:
    return bcrypt.hashpw(_prepare(password), bcrypt.gensalt(max(rounds, MIN_ROUNDS))).decode()


def check_password(password: str, hashed: str | None) -> bool:
    if not hashed:
        return False
    try:
        return bcrypt.checkpw(_prepare(password), hashed.encode())
    except ValueError:
        return False


# A hash of a random secret: checked when the user does not exist, so that an unknown user
# costs as much time as a wrong password and the answer does not tell them apart.
DUMMY_HASH = bcrypt.hashpw(b"cirrus-no-such-user", bcrypt.gensalt(MIN_ROUNDS)).decode()
