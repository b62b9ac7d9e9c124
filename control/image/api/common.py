"""What the image blueprints share: the service's settings, finding an image the caller may see,
policy targets, query parameters and answers.

Which images a caller sees follows Glance's database layer: an admin (``context_is_admin``) sees
every image; anyone else sees images without an owner, public and community images, the images
of their own project, and ``shared`` images their project is a member of (whatever the member
status: a rejected image is left out of lists but can still be fetched by id, as in Glance).
An image the caller cannot see answers ``404 No image found with ID <id>.``, so a private image
of another project is indistinguishable from a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, request

from control.common import db, errors, policy
from control.common.app import context
from control.common.app import is_admin as is_admin
from control.common.app import respond as respond
from control.image import models
from control.image.inspect import Inspector
from control.image.store import ImageStore

UUID_PATTERN = (
    r"^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
)


@dataclass
class ImageSettings:
    """The ``[image]`` section of image.conf, read once when the app is built."""

    store: ImageStore
    inspector: Inspector
    max_upload_size: int
    max_properties: int
    max_tags: int
    max_members: int
    limit_default: int
    limit_max: int


def settings() -> ImageSettings:
    found: ImageSettings = current_app.extensions["cirrus.image"]
    return found


def project_id() -> str | None:
    return context().project_id


def not_found(image_id: str) -> errors.NotFound:
    return errors.NotFound(f"No image found with ID {image_id}.")


def membership(image_id: str, project: str | None) -> models.ImageMember | None:
    if not project:
        return None
    return db.session().get(models.ImageMember, (image_id, project))


def can_see(image: models.Image, member: models.ImageMember | None, admin: bool) -> bool:
    if admin or image.owner is None:
        return True
    if image.visibility in ("public", "community"):
        return True
    project = project_id()
    if project and image.owner == project:
        return True
    return image.visibility == "shared" and member is not None


def find_image(image_id: str) -> tuple[models.Image, models.ImageMember | None]:
    """The image ``image_id`` and the caller's membership of it; 404 if the caller cannot see it."""
    image = db.session().get(models.Image, image_id)
    if image is None:
        raise not_found(image_id)
    member = membership(image.id, project_id())
    if not can_see(image, member, is_admin()):
        raise not_found(image_id)
    return image, member


def target(image: models.Image, member: models.ImageMember | None) -> dict[str, Any]:
    """The facts policy rules test about ``image`` (see :mod:`control.image.policies`)."""
    return {
        "project_id": image.owner,
        "owner": image.owner,
        "member_id": member.member if member is not None else None,
        "visibility": image.visibility,
        "visible_to_all": image.visibility in ("public", "community"),
        "image_id": image.id,
    }


def enforce(rule: str, image: models.Image, member: models.ImageMember | None) -> None:
    policy.enforce(rule, target(image, member))


def query_bool(name: str) -> bool | None:
    """A boolean filter as Glance takes it: ``true`` or ``false`` (any case), else 400."""
    if name not in request.args:
        return None
    value = request.args[name].strip().lower()
    if value not in ("true", "false"):
        raise errors.BadRequest(
            f"Invalid value '{request.args[name]}' for '{name}' filter. "
            "Valid values are 'true' or 'false'."
        )
    return value == "true"
