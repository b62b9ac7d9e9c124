"""``/v2/images/{id}/file``: upload and download image data, streamed both ways.

Upload (``PUT``, ``Content-Type: application/octet-stream``, 204):

1. The image must be ``queued`` and have ``disk_format`` and ``container_format`` (400
   otherwise); a declared size over ``[image] max_upload_size`` is refused at once (413).
2. ``queued`` -> ``saving`` in one conditional UPDATE, so two uploads cannot both start (409).
3. The body is streamed into a staging file of the store, counted and hashed chunk by chunk
   (md5 ``checksum``, sha512 ``os_hash_value``); over the limit: 413.
4. ``qemu-img info`` inspects the staged file (:mod:`control.image.inspect`); refused data: 400
   naming the image and what was found.
5. The file is renamed into place and the image becomes ``active`` with its ``size``,
   ``virtual_size`` and hashes.

A refused or interrupted upload puts the image back to ``queued`` (the client may upload again);
an unexpected failure leaves it ``killed``. Either way the staging file is removed. An image
deleted while its data was arriving answers 410 and leaves no file behind.

Download (``GET``): 200 with ``Content-Length`` and ``Content-MD5`` (the md5 hex digest, as
Glance), streamed from the file in chunks; 204 when the image has no data yet.
"""

from __future__ import annotations

import logging
import os
from typing import Any, cast

from flask import Blueprint, Response, request
from sqlalchemy import CursorResult, update
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wsgi import wrap_file

from control.common import db, errors
from control.common.app import no_content
from control.image import inspect, models
from control.image.api import common
from control.image.store import Staged, StoreError

LOG = logging.getLogger("cirrus.image.data")

bp = Blueprint("image_data", __name__, url_prefix="/v2")

OCTET_STREAM = "application/octet-stream"


class Gone(errors.APIError):
    code = 410
    title = "Gone"


def _set_status(image_id: str, new: str, expected: str, **values: Any) -> bool:
    """Move the image from ``expected`` to ``new`` status; ``False`` if it was not ``expected``."""
    sess = db.session()
    result = cast(
        CursorResult[Any],
        sess.execute(
            update(models.Image)
            .where(models.Image.id == image_id, models.Image.status == expected)
            .values(status=new, updated_at=db.utcnow(), **values)
            .execution_options(synchronize_session=False)
        ),
    )
    sess.commit()
    return result.rowcount == 1


def _declared_size() -> int | None:
    """The size the client announces: Content-Length (none when chunked), else the SDK's
    ``X-OpenStack-Image-Size``."""
    if request.content_length is not None:
        return request.content_length
    value = request.headers.get("X-OpenStack-Image-Size", "").strip()
    return int(value) if value.isdigit() else None


class UploadInterrupted(Exception):
    """The request body ended badly (a broken chunk, the connection lost)."""


def _stage(image_id: str, limit: int) -> Staged:
    """Stream the request body into the store (the store counts, hashes and enforces ``limit``)."""
    store = common.settings().store
    # Werkzeug stops reading at max_content_length; let it read one byte more than the limit so
    # that the store is the one that notices and answers with the limit in its message.
    request.max_content_length = limit + 1
    stream = request.stream

    def read(size: int) -> bytes:
        try:
            return stream.read(size)
        except OSError as exc:  # gunicorn's NoMoreData, InvalidChunkSize... are IOErrors
            raise UploadInterrupted(str(exc) or type(exc).__name__) from exc

    return store.stage(image_id, read, limit)


def _refuse(image_id: str, reason: str) -> errors.BadRequest:
    return errors.BadRequest(f"Image {image_id} was refused: {reason}.")


@bp.put("/images/<image_id>/file")
def upload(image_id: str) -> Response:
    image, member = common.find_image(image_id)
    common.enforce("upload_image", image, member)
    if request.mimetype != OCTET_STREAM:
        raise errors.UnsupportedMediaType(
            f"Image data must be sent with Content-Type {OCTET_STREAM}, not "
            f"{request.mimetype or 'none'}."
        )
    if not image.disk_format or not image.container_format:
        raise errors.BadRequest(
            "Properties disk_format, container_format must be set prior to saving data."
        )
    limits = common.settings()
    declared = _declared_size()
    if declared is not None and declared > limits.max_upload_size:
        raise errors.PayloadTooLarge(
            f"Image {image_id} was refused: {declared} bytes is more than this service accepts "
            f"({limits.max_upload_size} bytes, [image] max_upload_size)."
        )
    if not _set_status(image.id, "saving", "queued"):
        db.session().refresh(image)
        raise errors.Conflict(
            f"Image {image_id} is {image.status}: data can only be uploaded to a queued image."
        )
    disk_format, container_format = image.disk_format, image.container_format
    store = limits.store
    staged: Staged | None = None
    try:
        staged = _stage(image.id, limits.max_upload_size)
        found = limits.inspector.inspect(staged.path, disk_format, container_format)
        store.commit(staged)
    except inspect.InspectionError as exc:
        _back_to_queued(image.id, staged)
        raise _refuse(image_id, str(exc)) from None
    except inspect.InspectorUnavailable as exc:
        _back_to_queued(image.id, staged)
        LOG.error("cannot inspect image %s: %s", image_id, exc)
        raise errors.ServiceUnavailable(
            f"Image {image_id} cannot be inspected now: {exc}. Try again later."
        ) from None
    except StoreError as exc:
        _back_to_queued(image.id, staged)
        raise errors.PayloadTooLarge(f"Image {image_id} was refused: {exc}") from None
    except RequestEntityTooLarge:
        _back_to_queued(image.id, staged)
        raise errors.PayloadTooLarge(
            f"Image {image_id} was refused: the data is larger than this service accepts "
            f"({limits.max_upload_size} bytes, [image] max_upload_size)."
        ) from None
    except ClientDisconnected:
        _back_to_queued(image.id, staged)
        raise errors.BadRequest(
            f"The upload of image {image_id} was cut short: the client sent less data than "
            "it announced."
        ) from None
    except UploadInterrupted as exc:
        _back_to_queued(image.id, staged)
        raise errors.BadRequest(f"The upload of image {image_id} was interrupted: {exc}.") from None
    except Exception:
        LOG.exception("upload of image %s failed", image_id)
        if staged is not None:
            store.discard(staged)
        _set_status(image.id, "killed", "saving")
        raise
    activated = _set_status(
        image.id,
        "active",
        "saving",
        size=staged.size,
        virtual_size=found.virtual_size,
        checksum=staged.checksum,
        os_hash_algo=staged.os_hash_algo,
        os_hash_value=staged.os_hash_value,
    )
    if not activated:
        # Deleted (or killed) while the data was arriving: keep no orphan file.
        store.delete(image.id)
        raise Gone(f"Image {image_id} was deleted while its data was uploaded.")
    return no_content()


def _back_to_queued(image_id: str, staged: Staged | None) -> None:
    if staged is not None:
        common.settings().store.discard(staged)
    _set_status(image_id, "queued", "saving")


@bp.get("/images/<image_id>/file")
def download(image_id: str) -> Response:
    image, member = common.find_image(image_id)
    common.enforce("download_image", image, member)
    if image.status == "deactivated" and not common.is_admin():
        raise errors.Forbidden(f"Image {image_id} is deactivated: its data cannot be downloaded.")
    store = common.settings().store
    if image.status not in ("active", "deactivated"):
        return no_content()
    try:
        handle = store.open(image.id)
    except FileNotFoundError:
        LOG.error("image %s is %s but its data file is missing", image_id, image.status)
        raise errors.ServiceUnavailable(
            f"The data of image {image_id} is missing from the image store."
        ) from None
    response = Response(
        wrap_file(request.environ, handle, store.chunk_size),
        mimetype=OCTET_STREAM,
        direct_passthrough=True,
    )
    response.headers["Content-Length"] = str(os.fstat(handle.fileno()).st_size)
    if image.checksum:
        response.headers["Content-MD5"] = image.checksum
    return response
