"""The Fernet key repository, laid out as Keystone's: files named by integers in one directory.

``0`` is the staged key (already accepted, not yet used to sign); the highest number is the primary
key (signs new tokens); the others are secondary (only accepted). Rotation promotes the staged key
to primary, writes a new staged key and drops the oldest secondaries beyond ``max_active_keys``.
Every controller must hold the same files: the deploy copies them.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet


class KeyRepositoryError(Exception):
    pass


class KeyRepository:
    def __init__(self, path: str | os.PathLike[str], max_active_keys: int = 3) -> None:
        self.path = Path(path)
        if max_active_keys < 2:
            raise KeyRepositoryError("max_active_keys must be at least 2 (staged and primary)")
        self.max_active_keys = max_active_keys
        self._cache: tuple[tuple[tuple[int, float], ...], MultiFernet, Fernet] | None = None

    def _indexes(self) -> list[int]:
        if not self.path.is_dir():
            return []
        return sorted(int(p.name) for p in self.path.iterdir() if p.name.isdigit())

    def _write_key(self, index: int) -> None:
        target = self.path / str(index)
        tmp = self.path / f".{index}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
        os.replace(tmp, target)

    def setup(self) -> bool:
        """Create the repository with a staged and a primary key; False if it already exists."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        if self._indexes():
            return False
        self._write_key(0)
        self._write_key(1)
        return True

    def rotate(self) -> int:
        """Promote the staged key, stage a new one, prune; return the new primary's number."""
        indexes = self._indexes()
        if 0 not in indexes or len(indexes) < 2:
            raise KeyRepositoryError(f"{self.path}: no key repository here; run fernet-setup first")
        new_primary = max(indexes) + 1
        os.replace(self.path / "0", self.path / str(new_primary))
        self._write_key(0)
        secondaries = sorted(i for i in self._indexes() if i not in (0, new_primary))
        excess = len(secondaries) + 2 - self.max_active_keys
        for index in secondaries[: max(excess, 0)]:
            (self.path / str(index)).unlink()
        return new_primary

    def _load(self) -> tuple[MultiFernet, Fernet]:
        indexes = self._indexes()
        if len(indexes) < 2 or 0 not in indexes:
            raise KeyRepositoryError(
                f"{self.path}: the Fernet key repository is missing or incomplete; "
                "run `cirrus-manage identity fernet-setup`"
            )
        stamp = tuple((i, (self.path / str(i)).stat().st_mtime) for i in indexes)
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1], self._cache[2]
        keys = {i: Fernet((self.path / str(i)).read_bytes().strip()) for i in indexes}
        primary = keys[max(indexes)]
        ordered = [primary] + [keys[i] for i in sorted(indexes, reverse=True) if i != max(indexes)]
        multi = MultiFernet(ordered)
        self._cache = (stamp, multi, primary)
        return multi, primary

    def encrypt(self, data: bytes) -> bytes:
        _multi, primary = self._load()
        return primary.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        """Decrypt with any active key; raises ``cryptography.fernet.InvalidToken``."""
        multi, _primary = self._load()
        return multi.decrypt(token)
