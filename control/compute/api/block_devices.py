"""``block_device_mapping_v2`` and the volumes of a server's build and delete.

Parsing (:func:`parse_block_devices`: the volumes with their devices, the boot volume
``/dev/vda``, the others from ``/dev/vdb`` on, :func:`next_device`), the checks and the reservation
at create (:func:`check_volumes`, :func:`reserve_volumes`), the volumes compute makes from an
image (:func:`create_image_volumes`, named by :data:`CREATED_FOR` in their metadata), waiting for
them at build (:data:`VOLUME_CREATE_TIMEOUT`) and releasing the volumes of a failed build or a
deleted server. The create and delete endpoints live in :mod:`control.compute.api.servers`, the
``os-volume_attachments`` endpoints in :mod:`control.compute.api.volume_attachments`; the volume
API client is :mod:`control.compute.volume` (docs/block-storage-contract.md).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from control.common import db, errors
from control.compute import models, volume
from control.compute.api import common

# The logger of the servers API these helpers were part of (log output unchanged).
LOG = logging.getLogger("cirrus.compute.servers")


# -- device names --------------------------------------------------------------------------------


_DEVICE = re.compile(r"^(/dev/)?vd[a-z]{1,2}$")


def _device_index(name: str) -> int:
    """``/dev/vda`` -> 0, ``/dev/vdz`` -> 25, ``/dev/vdaa`` -> 26."""
    letters = name.removeprefix("/dev/").removeprefix("vd")
    index = 0
    for char in letters:
        index = index * 26 + (ord(char) - ord("a") + 1)
    return index - 1


def _device_for(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return f"/dev/vd{letters}"


def next_device(used: list[str], first: int = 1) -> str:
    """The first free ``/dev/vdX`` from ``first`` (vda, index 0, is the root disk)."""
    taken = {_device_index(name) for name in used if _DEVICE.match(name)}
    index = first
    while index in taken:
        index += 1
    return _device_for(index)


# -- block_device_mapping_v2 ---------------------------------------------------------------------


@dataclass
class VolumeMapping:
    """One volume of a ``block_device_mapping_v2`` (source and destination ``volume``)."""

    volume_id: str
    device: str
    boot_index: int | None
    delete_on_termination: bool
    #: ``source_type`` image: compute creates the volume from this image (``volume_size`` GiB).
    image_id: str = ""
    size: int = 0


_BDM_KEYS = {
    "source_type",
    "destination_type",
    "uuid",
    "boot_index",
    "device_name",
    "delete_on_termination",
    "volume_size",
    "guest_format",
    "disk_bus",
    "device_type",
    "tag",
    "volume_type",
    "no_device",
}


def _bdm_field(index: int, name: str) -> str:
    return f"block_device_mapping_v2[{index}].{name}"


def parse_block_devices(value: Any) -> tuple[list[VolumeMapping], str | None]:
    """The volumes of ``block_device_mapping_v2`` with their devices (the boot volume
    ``/dev/vda``, the others ``/dev/vdb`` on), and the image of an ``image -> local`` boot entry
    (what the CLI sends for a plain image boot). 400 naming the field for anything else."""
    if not value:
        return [], None
    mappings: list[VolumeMapping] = []
    boot_image: str | None = None
    boot_seen = False
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise errors.BadRequest(
                f"Invalid input for field 'block_device_mapping_v2[{index}]': not an object."
            )
        unknown = set(entry) - _BDM_KEYS
        if unknown:
            raise errors.BadRequest(
                f"Invalid input for field 'block_device_mapping_v2[{index}]': unknown keys "
                f"{sorted(unknown)}."
            )
        source = entry.get("source_type")
        if source not in ("volume", "image", "snapshot", "blank"):
            raise errors.BadRequest(
                f"Invalid input for field '{_bdm_field(index, 'source_type')}': {source!r} is "
                "not one of 'volume', 'image', 'snapshot', 'blank'."
            )
        destination = entry.get("destination_type") or ("volume" if source == "volume" else "local")
        if destination not in ("volume", "local"):
            raise errors.BadRequest(
                f"Invalid input for field '{_bdm_field(index, 'destination_type')}': "
                f"{destination!r} is not 'volume' or 'local'."
            )
        raw_boot = entry.get("boot_index")
        try:
            boot_index = None if raw_boot in (None, "", "none", "None") else int(raw_boot)
        except (TypeError, ValueError):
            raise errors.BadRequest(
                f"Invalid input for field '{_bdm_field(index, 'boot_index')}': {raw_boot!r} is "
                "not an integer."
            ) from None
        if boot_index is not None and boot_index < 0:
            boot_index = None
        if boot_index == 0:
            if boot_seen:
                raise errors.BadRequest(
                    "Invalid input for field 'block_device_mapping_v2': more than one entry has "
                    "boot_index 0."
                )
            boot_seen = True
        uuid_value = entry.get("uuid")
        if source == "image" and destination == "local":
            if boot_index != 0:
                raise errors.BadRequest(
                    f"Block device mapping {index} is invalid: an image with destination_type "
                    "local must be the boot device (boot_index 0)."
                )
            if not isinstance(uuid_value, str) or not common.is_uuid(uuid_value):
                raise errors.BadRequest(
                    f"Invalid input for field '{_bdm_field(index, 'uuid')}': the image id "
                    f"{uuid_value!r} is not a UUID."
                )
            boot_image = uuid_value
            continue
        if source == "image" and destination == "volume":
            if not isinstance(uuid_value, str) or not common.is_uuid(uuid_value):
                raise errors.BadRequest(
                    f"Invalid input for field '{_bdm_field(index, 'uuid')}': the image id "
                    f"{uuid_value!r} is not a UUID."
                )
            raw_size: Any = entry.get("volume_size")
            try:
                size = int(raw_size)
            except (TypeError, ValueError):
                size = 0
            if size < 1:
                raise errors.BadRequest(
                    f"Invalid input for field '{_bdm_field(index, 'volume_size')}': "
                    f"{raw_size!r}: a volume made from an image needs a size in GiB (>= 1)."
                )
            delete = entry.get("delete_on_termination", False)
            if isinstance(delete, str):
                delete = delete.strip().lower() in ("1", "true", "yes", "on", "t", "y")
            mappings.append(
                VolumeMapping(
                    volume_id="",
                    device="/dev/vda" if boot_index == 0 else "",
                    boot_index=boot_index,
                    delete_on_termination=bool(delete),
                    image_id=uuid_value,
                    size=size,
                )
            )
            continue
        if not (source == "volume" and destination == "volume"):
            raise errors.BadRequest(
                f"Block device mapping {index} is not supported: source_type {source!r} with "
                f"destination_type {destination!r}. Cirrus supports source_type 'volume' with "
                "destination_type 'volume' (an existing volume), source_type 'image' with "
                "destination_type 'volume' (a new volume made from the image, volume_size GiB) "
                "and source_type 'image' with destination_type 'local' as the boot image."
            )
        if not isinstance(uuid_value, str) or not common.is_uuid(uuid_value):
            raise errors.BadRequest(
                f"Invalid input for field '{_bdm_field(index, 'uuid')}': the volume id "
                f"{uuid_value!r} is not a UUID."
            )
        if any(m.volume_id == uuid_value for m in mappings):
            raise errors.BadRequest(
                f"Invalid input for field 'block_device_mapping_v2': volume {uuid_value} is "
                "given more than once."
            )
        delete = entry.get("delete_on_termination", False)
        if isinstance(delete, str):
            delete = delete.strip().lower() in ("1", "true", "yes", "on", "t", "y")
        mappings.append(
            VolumeMapping(
                volume_id=uuid_value,
                device="/dev/vda" if boot_index == 0 else "",
                boot_index=boot_index,
                delete_on_termination=bool(delete),
            )
        )
    # Devices: the boot volume is vda (else the image's root disk is), the others vdb on, in
    # boot order, then in the request's order.
    used = [m.device for m in mappings if m.device]
    for mapping in sorted(
        (m for m in mappings if not m.device),
        key=lambda m: (m.boot_index is None, m.boot_index or 0),
    ):
        mapping.device = next_device(used)
        used.append(mapping.device)
    return mappings, boot_image


CREATED_FOR = "cirrus_created_for_instance"


def create_image_volumes(
    client: volume.Client, mappings: list[VolumeMapping], instance_uuid: str, name: str
) -> None:
    """Ask the volume API for the volumes of ``source_type`` image (Nova makes them on the
    compute host; here compute-api does, with the user's token). They are ``creating`` now; the
    build waits until they are ``available`` before connecting them. Their metadata names the
    server, so that a failed build deletes those it made (``delete_on_termination``)."""
    for mapping in mappings:
        if not mapping.image_id:
            continue
        try:
            answer = client.call(
                "POST",
                "/volumes",
                {
                    "volume": {
                        "size": mapping.size,
                        "imageRef": mapping.image_id,
                        "name": f"{name}-{mapping.device.removeprefix('/dev/')}",
                        "metadata": {CREATED_FOR: instance_uuid},
                    }
                },
                expect=(202,),
            )
        except volume.VolumeAPIError as exc:
            if exc.status in (400, 403, 404, 413):
                raise errors.BadRequest(
                    f"Block Device Mapping is Invalid: a volume of {mapping.size} GiB cannot be "
                    f"made from image {mapping.image_id}: {exc.message}"
                ) from None
            raise volume.unavailable(exc) from None
        mapping.volume_id = str(answer["volume"]["id"])


def check_volumes(mappings: list[VolumeMapping]) -> volume.Client:
    """Each volume exists and is ``available`` (400 otherwise, naming it)."""
    client = volume.require_client()
    for mapping in mappings:
        if mapping.image_id:
            common.check_image(mapping.image_id)
            continue
        try:
            found = client.get(mapping.volume_id)
        except volume.VolumeAPIError as exc:
            if exc.status == 404:
                raise errors.BadRequest(
                    f"Block Device Mapping is Invalid: failed to get volume "
                    f"{mapping.volume_id}: it could not be found."
                ) from None
            raise volume.unavailable(exc) from None
        if found.get("status") != "available":
            raise errors.BadRequest(
                f"Block Device Mapping is Invalid: volume {mapping.volume_id} status must be "
                f"'available', but it is '{found.get('status')}'."
            )
    return client


def reserve_volumes(client: volume.Client, mappings: list[VolumeMapping]) -> None:
    """``os-reserve`` each volume; one that fails undoes the others (400 naming it)."""
    done: list[str] = []
    for mapping in mappings:
        if mapping.image_id:
            continue  # made from the image later, reserved once available
        try:
            client.reserve(mapping.volume_id)
        except volume.VolumeAPIError as exc:
            for volume_id in done:
                volume.rollback(client, volume_id, None)
            if exc.status in (400, 404, 409):
                raise errors.BadRequest(
                    f"Block Device Mapping is Invalid: volume {mapping.volume_id} cannot be "
                    f"reserved: {exc.message}"
                ) from None
            raise volume.unavailable(exc) from None
        done.append(mapping.volume_id)


# -- the build and the delete --------------------------------------------------------------------


class _suppressed:
    """Log and swallow any exception of a best-effort step."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc is not None and isinstance(exc, Exception):
            LOG.warning("%s failed: %s", self.what, exc)
            return True
        return False


def _delete_if_made_for(client: volume.Client, volume_id: str, instance_uuid: str) -> None:
    """Delete a volume compute made from an image for this server (its metadata says so)."""
    with _suppressed(f"delete of volume {volume_id}"):
        found = client.get(volume_id)
        if (found.get("metadata") or {}).get(CREATED_FOR) == instance_uuid:
            deadline = time.monotonic() + 30
            while found.get("status") in ("creating", "downloading") and (
                time.monotonic() < deadline
            ):
                time.sleep(0.5)
                found = client.get(volume_id)
            client.delete(volume_id)


def _release_reserved(instance_uuid: str) -> None:
    """A build that failed before its volumes were connected: they go back to ``available``
    and the mappings are dropped (the ERROR server has no volume)."""
    with db.database().transaction() as sess:
        row = sess.get(models.Instance, instance_uuid, with_for_update=True)
        if row is None or not row.block_devices:
            return
        volume_ids = [(b.volume_id, b.delete_on_termination) for b in row.block_devices]
        row.block_devices.clear()
    client = _volume_client_or_none()
    if client is None:
        return
    for volume_id, delete_volume in volume_ids:
        volume.rollback(client, volume_id, None)
        if delete_volume:
            _delete_if_made_for(client, volume_id, instance_uuid)


def _volume_client_or_none() -> volume.Client | None:
    try:
        return volume.user_client()
    except errors.APIError as exc:
        LOG.warning("no volume service: %s", exc.message)
        return None


#: How long a build waits for a volume made from an image (Nova's block_device_allocate_retries
#: times its interval: 60 x 3 s).
VOLUME_CREATE_TIMEOUT = 180.0


def _ready(client: volume.Client, volume_id: str) -> None:
    """A volume compute made from an image: wait until it is ``available``, then reserve it.
    A volume reserved at create (``attaching``) is ready as it is."""
    deadline = time.monotonic() + VOLUME_CREATE_TIMEOUT
    while True:
        found = client.get(volume_id)
        status = found.get("status")
        if status == "available":
            client.reserve(volume_id)
            return
        if status not in ("creating", "downloading"):
            if status == "attaching":
                return
            raise volume.VolumeAPIError(f"volume {volume_id} is {status}, not available", 400)
        if time.monotonic() >= deadline:
            raise volume.VolumeAPIError(
                f"volume {volume_id} did not become available within "
                f"{VOLUME_CREATE_TIMEOUT:.0f} s (still {status})",
                0,
            )
        time.sleep(0.5)


def _release_volumes(
    instance_uuid: str, host: str | None, bdms: list[tuple[str, str | None, bool]]
) -> None:
    """A deleted server's volumes: terminated and detached (``delete_on_termination`` ones
    deleted) through the volume API. Never fails the delete: problems are logged."""
    if not bdms:
        return
    client = _volume_client_or_none()
    for volume_id, attachment_id, delete_volume in bdms:
        volume.release(client, volume_id, host, attachment_id, delete_volume)
    LOG.info("server %s: volumes %s released", instance_uuid, [b[0] for b in bdms])
