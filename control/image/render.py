"""How image resources look on the wire (Glance v2 bodies).

Images are flat: the core attributes, then every extra property at the same level. Links are
relative paths, as Glance gives them (``/v2/images/<id>``), and times are UTC without fraction
(``2030-01-01T00:00:00Z``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control.image import models

IMAGE_SCHEMA = "/v2/schemas/image"
IMAGES_SCHEMA = "/v2/schemas/images"
MEMBER_SCHEMA = "/v2/schemas/member"
MEMBERS_SCHEMA = "/v2/schemas/members"


def isotime(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def image_href(image_id: str, sub: str = "") -> str:
    href = f"/v2/images/{image_id}"
    return f"{href}/{sub}" if sub else href


def image(img: models.Image) -> dict[str, Any]:
    body: dict[str, Any] = dict(img.extra_properties())
    body.update(
        {
            "id": img.id,
            "name": img.name,
            "status": img.status,
            "visibility": img.visibility,
            "protected": img.protected,
            "os_hidden": img.os_hidden,
            "owner": img.owner,
            "disk_format": img.disk_format,
            "container_format": img.container_format,
            "size": img.size,
            "virtual_size": img.virtual_size,
            "checksum": img.checksum,
            "os_hash_algo": img.os_hash_algo,
            "os_hash_value": img.os_hash_value,
            "min_disk": img.min_disk,
            "min_ram": img.min_ram,
            "tags": img.tag_values(),
            "created_at": isotime(img.created_at),
            "updated_at": isotime(img.updated_at),
            "self": image_href(img.id),
            "file": image_href(img.id, "file"),
            "schema": IMAGE_SCHEMA,
        }
    )
    return body


def member(m: models.ImageMember) -> dict[str, Any]:
    return {
        "image_id": m.image_id,
        "member_id": m.member,
        "status": m.status,
        "created_at": isotime(m.created_at),
        "updated_at": isotime(m.updated_at),
        "schema": MEMBER_SCHEMA,
    }
