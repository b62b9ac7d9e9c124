"""``/v2/schemas/{image,images,member,members}``: the JSON Schemas Glance publishes.

Clients such as python-glanceclient fetch them to learn which attributes exist; the image schema
allows any extra string property (``additionalProperties``), as Glance's permissive schema does.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from control.common import policy
from control.image import models
from control.image.api import common

bp = Blueprint("image_schemas", __name__, url_prefix="/v2/schemas")

UUID = {"type": "string", "pattern": common.UUID_PATTERN}


def _read_only(kind: str | list[str], description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "readOnly": True, "description": description, **extra}


def image_schema() -> dict[str, Any]:
    return {
        "name": "image",
        "properties": {
            "id": {**UUID, "description": "An identifier for the image"},
            "name": {
                "type": ["null", "string"],
                "maxLength": 255,
                "description": "Descriptive name for the image",
            },
            "status": _read_only(
                "string", "Status of the image", enum=[*models.STATUSES, "pending_delete"]
            ),
            "visibility": {
                "type": "string",
                "enum": list(models.VISIBILITIES),
                "description": "Scope of image accessibility",
            },
            "protected": {
                "type": "boolean",
                "description": "If true, image will not be deletable.",
            },
            "os_hidden": {
                "type": "boolean",
                "description": "If true, image will not appear in default image list response.",
            },
            "checksum": _read_only(["null", "string"], "md5 hash of image contents.", maxLength=32),
            "os_hash_algo": _read_only(
                ["null", "string"], "Algorithm to calculate the os_hash_value", maxLength=64
            ),
            "os_hash_value": _read_only(
                ["null", "string"],
                "Hexdigest of the image contents using the algorithm specified by the os_hash_algo",
                maxLength=128,
            ),
            "owner": {
                "type": ["null", "string"],
                "maxLength": 255,
                "description": "Owner of the image",
            },
            "size": _read_only(["null", "integer"], "Size of image file in bytes"),
            "virtual_size": _read_only(["null", "integer"], "Virtual size of image in bytes"),
            "container_format": {
                "type": ["null", "string"],
                "enum": [None, *models.CONTAINER_FORMATS],
                "description": "Format of the container",
            },
            "disk_format": {
                "type": ["null", "string"],
                "enum": [None, *models.DISK_FORMATS],
                "description": "Format of the disk",
            },
            "created_at": _read_only("string", "Date and time of image registration"),
            "updated_at": _read_only("string", "Date and time of the last image modification"),
            "tags": {
                "type": "array",
                "items": {"type": "string", "maxLength": 255},
                "description": "List of strings related to the image",
            },
            "min_ram": {
                "type": "integer",
                "description": "Amount of ram (in MB) required to boot image.",
            },
            "min_disk": {
                "type": "integer",
                "description": "Amount of disk space (in GB) required to boot image.",
            },
            "self": _read_only("string", "An image self url"),
            "file": _read_only("string", "An image file url"),
            "schema": _read_only("string", "An image schema url"),
            "kernel_id": {
                **UUID,
                "type": ["null", "string"],
                "description": "ID of image stored in Glance that should be used as the kernel "
                "when booting an AMI-style image.",
                "is_base": False,
            },
            "ramdisk_id": {
                **UUID,
                "type": ["null", "string"],
                "description": "ID of image stored in Glance that should be used as the "
                "ramdisk when booting an AMI-style image.",
                "is_base": False,
            },
        },
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def member_schema() -> dict[str, Any]:
    return {
        "name": "member",
        "properties": {
            "created_at": {
                "type": "string",
                "description": "Date and time of image member creation",
            },
            "image_id": {**UUID, "description": "An identifier for the image"},
            "member_id": {"type": "string", "description": "An identifier for the image member"},
            "schema": _read_only("string", "A member schema url"),
            "status": {
                "type": "string",
                "enum": list(models.MEMBER_STATUSES),
                "description": "The status of this image member",
            },
            "updated_at": {
                "type": "string",
                "description": "Date and time of last modification of image member",
            },
        },
    }


def _collection(name: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "properties": {
            name: {"type": "array", "items": item},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


@bp.get("/image")
def image() -> Response:
    policy.enforce("get_schema")
    return common.respond(image_schema())


@bp.get("/images")
def images() -> Response:
    policy.enforce("get_schema")
    return common.respond(_collection("images", image_schema()))


@bp.get("/member")
def member() -> Response:
    policy.enforce("get_schema")
    return common.respond(member_schema())


@bp.get("/members")
def members() -> Response:
    policy.enforce("get_schema")
    return common.respond(_collection("members", member_schema()))
