"""A volume from an image: the API checks the image with the user's token through the image API
found in the catalog, the agent downloads it, and the volume is bootable with
``volume_image_metadata``; a missing image or a too small volume is a 400."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api import volume_env
from tests.api.volume_env import VolumeEnv, assert_error

pytestmark = [pytest.mark.mariadb, pytest.mark.rabbitmq]

DATA = b"cirrus-image" + b"\0" * (1024 * 1024 - 12)


@pytest.fixture(scope="module")
def env(volume_server: Any, identity_server: Any, image_server: Any) -> Iterator[VolumeEnv]:
    yield from volume_env.env_fixture(volume_server, identity_server)


@pytest.fixture(scope="module")
def image(env: VolumeEnv, image_server: Any) -> dict[str, Any]:
    headers = {"X-Auth-Token": env.token("a")}
    created = env.http.post(
        f"{image_server.url}/v2/images",
        json={"name": "vol-image", "disk_format": "raw", "container_format": "bare"},
        headers=headers,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    upload = env.http.put(
        f"{image_server.url}/v2/images/{image_id}/file",
        data=DATA,
        headers={**headers, "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert upload.status_code == 204, upload.text
    found: dict[str, Any] = env.http.get(
        f"{image_server.url}/v2/images/{image_id}", headers=headers, timeout=30
    ).json()
    return found


def test_volume_from_an_image(env: VolumeEnv, image: dict[str, Any]) -> None:
    volume = env.create_volume(imageRef=image["id"], size=1)

    assert volume["bootable"] == "true"
    meta = volume["volume_image_metadata"]
    assert meta["image_id"] == image["id"]
    assert meta["image_name"] == "vol-image"
    assert meta["disk_format"] == "raw"
    assert meta["container_format"] == "bare"
    assert meta["size"] == str(len(DATA))
    assert meta["checksum"] == image["checksum"]
    path = next(p for p in env.server.agent_volumes_dir.iterdir() if volume["id"] in p.name)
    with path.open("rb") as handle:
        assert handle.read(12) == b"cirrus-image"
    # Bootable-ness and image metadata go with a copy.
    clone = env.create_volume(source_volid=volume["id"], size=None)
    assert clone["bootable"] == "true"
    assert clone["volume_image_metadata"]["image_id"] == image["id"]
    env.delete_volume(clone["id"])
    env.delete_volume(volume["id"])


def test_image_errors(env: VolumeEnv, image: dict[str, Any]) -> None:
    assert_error(
        env.post("/volumes", {"volume": {"size": 1, "imageRef": str(uuid.uuid4())}}),
        400,
        "could not be found",
    )
    assert_error(env.post("/volumes", {"volume": {"size": 1, "imageRef": "nope"}}), 400, "nope")
    assert_error(env.post("/volumes", {"volume": {"imageRef": image["id"]}}), 400, "size")
    # Another project cannot use a private image.
    assert_error(
        env.post("/volumes", {"volume": {"size": 1, "imageRef": image["id"]}}, "b"),
        400,
        image["id"],
    )
