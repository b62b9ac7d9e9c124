"""The per-host image cache: images downloaded once from image-api, reused by later builds.

An image is fetched with the token of the user who asked for the server (it may be private to
their project), streamed to a temporary file in the cache directory while its md5 and
``os_hash_algo`` digest are computed, checked against what image-api recorded, and renamed to
``<image id>`` only when both match. Concurrent builds of the same image wait for one download.
Files are read-only for the hypervisor and never written again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from agents.compute.driver import DriverError, ImageFiles

LOG = logging.getLogger("cirrus.compute.imagecache")

CHUNK = 1024 * 1024


class ImageCache:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        endpoint: Callable[[str], str],
        timeout: float = 60.0,
    ) -> None:
        """``endpoint(token)`` gives image-api's base URL (configured, or from the catalog)."""
        self.directory = Path(directory)
        self.endpoint = endpoint
        self.timeout = timeout
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.downloads = 0
        self.http = requests.Session()

    def ensure_dir(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, image_id: str) -> Path:
        return self.directory / image_id

    def _lock(self, image_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(image_id, threading.Lock())

    def _get(self, url: str, token: str | None, stream: bool = False) -> requests.Response:
        headers = {"X-Auth-Token": token} if token else {}
        try:
            response = self.http.get(url, headers=headers, timeout=self.timeout, stream=stream)
        except requests.RequestException as exc:
            raise DriverError(f"image service did not answer: {exc}") from None
        if response.status_code != 200:
            response.close()
            raise DriverError(f"image service answered {response.status_code} for {url}")
        return response

    def fetch(self, image_id: str, token: str | None, meta: dict[str, Any] | None = None) -> Path:
        """The cached file of ``image_id``, downloaded first when missing."""
        target = self.path(image_id)
        if target.exists():
            return target
        with self._lock(image_id):
            if target.exists():
                return target
            base = self.endpoint(token or "").rstrip("/")
            if meta is None or not meta.get("checksum"):
                meta = self._get(f"{base}/v2/images/{image_id}", token).json()
            self.ensure_dir()
            self._download(f"{base}/v2/images/{image_id}/file", token, target, meta)
            return target

    def _download(self, url: str, token: str | None, target: Path, meta: dict[str, Any]) -> None:
        md5 = hashlib.md5(usedforsecurity=False)
        algo = meta.get("os_hash_algo") or "sha512"
        try:
            strong = hashlib.new(algo)
        except ValueError:
            raise DriverError(f"unknown image hash algorithm {algo!r}") from None
        partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
        size = 0
        try:
            with self._get(url, token, stream=True) as response, partial.open("wb") as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    md5.update(chunk)
                    strong.update(chunk)
                    size += len(chunk)
            if meta.get("size") is not None and int(meta["size"]) != size:
                raise DriverError(
                    f"image {target.name}: downloaded {size} bytes, image-api says {meta['size']}"
                )
            if meta.get("checksum") and md5.hexdigest() != meta["checksum"]:
                raise DriverError(f"image {target.name}: md5 checksum mismatch")
            if meta.get("os_hash_value") and strong.hexdigest() != meta["os_hash_value"]:
                raise DriverError(f"image {target.name}: {algo} checksum mismatch")
            partial.chmod(0o444)
            partial.rename(target)
            self.downloads += 1
            LOG.info("cached image %s (%d bytes)", target.name, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()

    def image_files(self, image: dict[str, Any], token: str | None) -> ImageFiles:
        """Everything the driver needs to boot ``image`` (as compute-api described it)."""
        image_id = str(image["id"])
        disk = self.fetch(image_id, token, image)
        kernel = self.fetch(str(image["kernel_id"]), token) if image.get("kernel_id") else None
        ramdisk = self.fetch(str(image["ramdisk_id"]), token) if image.get("ramdisk_id") else None
        files = ImageFiles(
            image_id=image_id,
            disk=None
            if kernel is not None and image.get("disk_format") in ("ari", "aki")
            else disk,
            disk_format=str(image.get("disk_format") or "qcow2"),
            kernel=kernel,
            ramdisk=ramdisk,
        )
        if image.get("os_command_line"):
            files.kernel_cmdline = str(image["os_command_line"])
        return files

    def close(self) -> None:
        self.http.close()
