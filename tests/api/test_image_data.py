"""Image data through the Flask test client: streamed upload and download, checksums, the
size limit, and the ``qemu-img`` inspection of real images made with qemu-img."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api import image_env
from tests.api.identity_helpers import assert_error
from tests.api.image_env import MAX_UPLOAD, ImageEnv, make_qcow2, qemu_img
from tests.fixtures.identity_server import IdentityServer

pytestmark = pytest.mark.mariadb


@pytest.fixture(scope="module")
def env(
    mariadb: Any, identity_server: IdentityServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImageEnv]:
    yield from image_env.env_fixture(mariadb, identity_server, tmp_path_factory)


def unique(prefix: str = "data") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def staging_files(env: ImageEnv) -> list[Path]:
    staging = env.store_dir / "staging"
    return list(staging.iterdir()) if staging.exists() else []


def test_qcow2_upload_activates_with_checksums_and_downloads_identically(
    env: ImageEnv, tmp_path: Path
) -> None:
    data = make_qcow2(tmp_path / "disk.qcow2", "24M")
    image = env.create(name=unique(), disk_format="qcow2")

    resp = env.upload(image["id"], data)

    assert resp.status_code == 204, resp.get_json()
    shown = env.show(image["id"])
    assert shown["status"] == "active"
    assert shown["size"] == len(data)
    assert shown["virtual_size"] == 24 * 1024 * 1024
    assert shown["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    stored = env.store_dir / image["id"]
    assert stored.read_bytes() == data
    assert oct(stored.stat().st_mode & 0o777) == "0o640"
    assert staging_files(env) == []

    download = env.get(f"/v2/images/{image['id']}/file")
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["Content-Length"] == str(len(data))
    assert download.headers["Content-MD5"] == shown["checksum"]
    assert download.get_data() == data


def test_raw_upload_streams_from_a_file_object(env: ImageEnv) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    image = env.create(name=unique(), disk_format="raw")

    resp = env.client.put(
        f"/v2/images/{image['id']}/file",
        input_stream=io.BytesIO(data),
        headers=env.headers(
            **{"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        ),
    )

    assert resp.status_code == 204, resp.get_json()
    shown = env.show(image["id"])
    assert (shown["status"], shown["size"], shown["virtual_size"]) == (
        "active",
        len(data),
        len(data),
    )
    assert env.get(f"/v2/images/{image['id']}/file").get_data() == data


def test_download_without_data_is_204(env: ImageEnv) -> None:
    image = env.create(name=unique())

    resp = env.get(f"/v2/images/{image['id']}/file")

    assert resp.status_code == 204
    assert resp.get_data() == b""


def test_second_upload_is_409(env: ImageEnv) -> None:
    image = env.create(name=unique())
    assert env.upload(image["id"], b"first").status_code == 204

    assert_error(env.upload(image["id"], b"second"), 409, "active", "queued")


def test_upload_needs_octet_stream_and_formats(env: ImageEnv) -> None:
    image = env.create(name=unique())
    bare = env.create(name=unique(), disk_format=None, container_format=None)

    resp = env.client.put(
        f"/v2/images/{image['id']}/file",
        data=b"x",
        headers=env.headers(**{"Content-Type": "text/plain"}),
    )

    assert_error(resp, 415, "application/octet-stream")
    assert_error(env.upload(bare["id"], b"x"), 400, "disk_format, container_format")
    assert env.show(image["id"])["status"] == "queued"


def test_upload_over_the_limit_is_413_and_image_stays_queued(env: ImageEnv) -> None:
    image = env.create(name=unique())
    data = b"\0" * (MAX_UPLOAD + 1)

    announced = env.upload(image["id"], data)
    streamed = env.client.put(
        f"/v2/images/{image['id']}/file",
        input_stream=io.BytesIO(data),
        headers=env.headers(**{"Content-Type": "application/octet-stream"}),
        # As gunicorn presents a chunked body: no length, the server ends the stream.
        environ_overrides={"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"},
    )

    assert_error(announced, 413, f"{MAX_UPLOAD + 1} bytes is more than", "max_upload_size")
    assert_error(streamed, 413, "larger than this service accepts", str(MAX_UPLOAD))
    shown = env.show(image["id"])
    assert (shown["status"], shown["size"]) == ("queued", None)
    assert not (env.store_dir / image["id"]).exists()
    assert staging_files(env) == []
    assert env.upload(image["id"], b"small enough").status_code == 204


def test_upload_cut_short_puts_the_image_back_to_queued(env: ImageEnv) -> None:
    image = env.create(name=unique())

    resp = env.client.put(
        f"/v2/images/{image['id']}/file",
        input_stream=io.BytesIO(b"only part of it"),
        headers=env.headers(**{"Content-Type": "application/octet-stream"}),
        environ_overrides={"CONTENT_LENGTH": "1000"},
    )

    assert_error(resp, 400, "cut short")
    assert env.show(image["id"])["status"] == "queued"
    assert staging_files(env) == []


def test_raw_data_declared_qcow2_is_refused_naming_what_was_found(env: ImageEnv) -> None:
    image = env.create(name=unique(), disk_format="qcow2")

    resp = env.upload(image["id"], os.urandom(256 * 1024))

    assert_error(
        resp,
        400,
        f"Image {image['id']} was refused",
        "its data is in raw format",
        "disk_format is qcow2",
    )
    assert env.show(image["id"])["status"] == "queued"
    assert not (env.store_dir / image["id"]).exists()
    assert staging_files(env) == []


def test_qcow2_declared_raw_is_refused(env: ImageEnv, tmp_path: Path) -> None:
    image = env.create(name=unique(), disk_format="raw")

    resp = env.upload(image["id"], make_qcow2(tmp_path / "disk.qcow2"))

    assert_error(resp, 400, "its data is in qcow2 format", "disk_format is raw")


def test_qcow2_with_a_backing_file_is_refused(env: ImageEnv, tmp_path: Path) -> None:
    make_qcow2(tmp_path / "base.qcow2")
    data = make_qcow2(tmp_path / "overlay.qcow2", "16M", "-b", "base.qcow2", "-F", "qcow2")
    image = env.create(name=unique(), disk_format="qcow2")

    resp = env.upload(image["id"], data)

    assert_error(resp, 400, f"Image {image['id']} was refused", "backing file")
    assert env.show(image["id"])["status"] == "queued"


def test_qcow2_with_an_external_data_file_is_refused(env: ImageEnv, tmp_path: Path) -> None:
    data = make_qcow2(tmp_path / "disk.qcow2", "16M", "-o", f"data_file={tmp_path / 'data.raw'}")
    image = env.create(name=unique(), disk_format="qcow2")

    resp = env.upload(image["id"], data)

    assert_error(resp, 400, "external data file")


def test_vmdk_sparse_accepted_and_descriptor_refused(env: ImageEnv, tmp_path: Path) -> None:
    qemu_img("create", "-f", "vmdk", str(tmp_path / "sparse.vmdk"), "8M")
    qemu_img(
        "create", "-f", "vmdk", "-o", "subformat=monolithicFlat", str(tmp_path / "flat.vmdk"), "1M"
    )
    sparse = env.create(name=unique(), disk_format="vmdk")
    flat = env.create(name=unique(), disk_format="vmdk")

    accepted = env.upload(sparse["id"], (tmp_path / "sparse.vmdk").read_bytes())
    refused = env.upload(flat["id"], (tmp_path / "flat.vmdk").read_bytes())

    assert accepted.status_code == 204, accepted.get_json()
    assert env.show(sparse["id"])["virtual_size"] == 8 * 1024 * 1024
    assert_error(refused, 400, "VMDK descriptor")


def test_iso_needs_the_iso9660_signature(env: ImageEnv) -> None:
    iso = bytearray(64 * 1024)
    iso[32769:32774] = b"CD001"
    good = env.create(name=unique(), disk_format="iso")
    bad = env.create(name=unique(), disk_format="iso")

    assert env.upload(good["id"], bytes(iso)).status_code == 204
    assert_error(env.upload(bad["id"], b"\0" * 65536), 400, "ISO 9660")


def test_container_formats_other_than_bare_are_not_compared(env: ImageEnv) -> None:
    image = env.create(name=unique(), disk_format="qcow2", container_format="ova")

    resp = env.upload(image["id"], b"an ova archive, not a qcow2")

    assert resp.status_code == 204, resp.get_json()
    assert env.show(image["id"])["virtual_size"] is None


def test_upload_and_download_policy(env: ImageEnv, tmp_path: Path) -> None:
    image = env.create(name=unique(), visibility="private")
    path = f"/v2/images/{image['id']}/file"

    assert_error(env.upload(image["id"], b"x", who="reader"), 403, "upload_image")
    assert_error(env.upload(image["id"], b"x", who="b"), 404)
    assert env.upload(image["id"], b"mine").status_code == 204
    assert env.get(path, "reader").get_data() == b"mine"
    assert_error(env.get(path, "b"), 404)


def test_delete_removes_the_file(env: ImageEnv) -> None:
    image = env.create(name=unique())
    env.upload(image["id"], b"to be deleted")
    assert (env.store_dir / image["id"]).exists()

    assert env.delete(f"/v2/images/{image['id']}").status_code == 204

    assert not (env.store_dir / image["id"]).exists()
