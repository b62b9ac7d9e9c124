"""``/v2/images/{id}/tags/{tag}``: add (``PUT``, idempotent) and remove (``DELETE``) one tag.

Both need ``modify_image``; a tag is 1 to 255 characters (400 otherwise); more than ``[image]
max_tags`` tags is 413; removing a tag the image does not have is 404.
"""

from __future__ import annotations

from flask import Blueprint, Response

from control.common import db, errors
from control.common.app import no_content
from control.image import models
from control.image.api import common

bp = Blueprint("image_tags", __name__, url_prefix="/v2")


@bp.put("/images/<image_id>/tags/<tag>")
def add_tag(image_id: str, tag: str) -> Response:
    image, member = common.find_image(image_id)
    common.enforce("modify_image", image, member)
    if not 0 < len(tag) <= 255:
        raise errors.BadRequest("Invalid input for field 'tag': 1 to 255 characters are allowed.")
    values = image.tag_values()
    if tag not in values:
        limit = common.settings().max_tags
        if len(values) >= limit:
            raise errors.PayloadTooLarge(f"An image may have at most {limit} tags.")
        image.tags.append(models.ImageTag(value=tag))
        image.updated_at = db.utcnow()
        db.commit(f"Image {image_id} already has a tag that differs from {tag!r} only in case.")
    return no_content()


@bp.delete("/images/<image_id>/tags/<tag>")
def delete_tag(image_id: str, tag: str) -> Response:
    image, member = common.find_image(image_id)
    common.enforce("modify_image", image, member)
    for existing in image.tags:
        if existing.value == tag:
            image.tags.remove(existing)
            image.updated_at = db.utcnow()
            db.commit()
            return no_content()
    raise errors.NotFound(f"Image {image_id} has no tag {tag!r}.")
