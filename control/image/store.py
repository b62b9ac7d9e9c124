"""The on-disk image store: one file per image, named after its id, under ``[image] store_dir``.

An upload is streamed into a staging file (``<store_dir>/staging/<id>.<random>``, same file
system) while its size is counted and its md5 and sha512 are computed; nothing holds more than one
chunk in memory. The staged file is inspected, then renamed over ``<store_dir>/<id>`` in one
atomic step, or removed. A reader therefore sees either no file or a complete one.

Layout::

    <store_dir>/                  0750
        <image id>                0640, the image data of an active image
        staging/                  0750
            <image id>.<random>   0600, an upload in progress
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK_SIZE = 1024 * 1024
HASH_ALGO = "sha512"

_IMAGE_ID = re.compile(r"^[0-9a-fA-F-]{36}$")


class StoreError(Exception):
    """A write the store could not complete; ``code`` is the HTTP status that fits."""

    code = 500


class TooLarge(StoreError):
    code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The image data is larger than this service accepts ({limit} bytes, "
            "[image] max_upload_size)."
        )
        self.limit = limit


class StoreFull(StoreError):
    code = 413

    def __init__(self) -> None:
        super().__init__("The image store has no space left for this image.")


@dataclass
class Staged:
    """Data written to a staging file, with what was measured while writing it."""

    image_id: str
    path: Path
    size: int
    checksum: str  # md5 hex digest
    os_hash_algo: str
    os_hash_value: str


class ImageStore:
    def __init__(self, directory: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE) -> None:
        self.directory = Path(directory)
        self.staging = self.directory / "staging"
        self.chunk_size = chunk_size

    def ensure(self) -> None:
        """Create the store directories when missing."""
        self.directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        self.staging.mkdir(mode=0o750, exist_ok=True)

    def path(self, image_id: str) -> Path:
        if not _IMAGE_ID.match(image_id):
            raise ValueError(f"not an image id: {image_id!r}")
        return self.directory / image_id

    def exists(self, image_id: str) -> bool:
        return self.path(image_id).is_file()

    # -- writing -------------------------------------------------------------------------------

    def stage(
        self, image_id: str, read: Callable[[int], bytes], max_size: int | None = None
    ) -> Staged:
        """Stream ``read(n)`` until it returns nothing into a staging file.

        Raises :class:`TooLarge` as soon as more than ``max_size`` bytes arrived and
        :class:`StoreFull` when the disk is full; the staging file is removed on any failure.
        """
        self.ensure()
        self.path(image_id)  # validates the id
        target = self.staging / f"{image_id}.{secrets.token_hex(8)}"
        md5 = hashlib.md5(usedforsecurity=False)
        secure = hashlib.new(HASH_ALGO)
        size = 0
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                while True:
                    chunk = read(self.chunk_size)
                    if not chunk:
                        break
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        raise TooLarge(max_size)
                    md5.update(chunk)
                    secure.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            target.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFull() from None
            raise
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return Staged(image_id, target, size, md5.hexdigest(), HASH_ALGO, secure.hexdigest())

    def commit(self, staged: Staged) -> Path:
        """Move a staged file to its final place (atomic: same file system)."""
        final = self.path(staged.image_id)
        os.chmod(staged.path, 0o640)
        os.replace(staged.path, final)
        return final

    def discard(self, staged: Staged) -> None:
        staged.path.unlink(missing_ok=True)

    # -- reading and deleting ------------------------------------------------------------------

    def open(self, image_id: str) -> BinaryIO:
        """The image's data file opened for reading (it stays readable if deleted meanwhile)."""
        return self.path(image_id).open("rb")

    def delete(self, image_id: str) -> bool:
        """Remove the image's data file; ``False`` when there was none."""
        try:
            self.path(image_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def clean_staging(self, image_id: str) -> None:
        """Remove the staging files of an image (an upload that died with its worker)."""
        with contextlib.suppress(FileNotFoundError):
            for leftover in self.staging.glob(f"{image_id}.*"):
                leftover.unlink(missing_ok=True)
