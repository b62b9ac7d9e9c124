"""The metadata API's views: every path behind the proxy's signature (see :mod:`signing`).

Each request names its instance in headers the l3 agent's metadata proxy adds; the views check
them before anything else (:func:`_guest`): a header missing, 400 (as Nova); a signature missing
or wrong, 403 (logged); an unknown or deleted instance, or one of another project than
``X-Tenant-ID``, 404. They are ``@public`` for the token middleware: guests have no token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy import select

from control.common import db, errors
from control.common.app import public
from control.compute import models
from control.metadata import content, signing

LOG = logging.getLogger("cirrus.metadata")

bp = Blueprint("metadata", __name__)


@dataclass(frozen=True)
class MetadataSettings:
    shared_secret: str
    dhcp_domain: str
    default_availability_zone: str


def settings() -> MetadataSettings:
    value: MetadataSettings = current_app.extensions["cirrus.metadata"]
    return value


def _forwarded_for() -> str:
    return request.headers.get(signing.FORWARDED_FOR, "").split(",")[0].strip()


def _load(instance_id: str, address: str) -> content.Guest | None:
    sess = db.session()
    instance = sess.get(models.Instance, instance_id)
    if instance is None or instance.vm_state == models.DELETED:
        return None
    key_type = None
    if instance.key_name:
        key_type = sess.scalars(
            select(models.KeyPair.type).where(
                models.KeyPair.user_id == instance.user_id,
                models.KeyPair.name == instance.key_name,
            )
        ).first()
    conf = settings()
    return content.Guest(
        uuid=instance.uuid,
        name=instance.name,
        project_id=instance.project_id,
        availability_zone=instance.availability_zone or conf.default_availability_zone,
        flavor_name=instance.flavor_name,
        image_ref=instance.image_ref,
        address=address,
        key_name=instance.key_name,
        key_data=instance.key_data,
        key_type=key_type or "ssh",
        user_data=content.decode_user_data(instance.user_data),
        meta=instance.metadata_dict(),
        vifs=instance.vifs(),
        dhcp_domain=conf.dhcp_domain,
    )


@bp.before_request
def _guest() -> None:
    """Check the proxy's headers and load the instance into ``g.guest``."""
    instance_id = request.headers.get(signing.INSTANCE_ID)
    tenant_id = request.headers.get(signing.TENANT_ID)
    address = _forwarded_for()
    if not instance_id:
        raise errors.BadRequest("X-Instance-ID header is missing from request.")
    if not tenant_id:
        raise errors.BadRequest("X-Tenant-ID header is missing from request.")
    signature = request.headers.get(signing.SIGNATURE, "")
    if not signing.verify(settings().shared_secret, instance_id, signature):
        # The expected value is never logged: it is what a forger needs.
        LOG.warning(
            "X-Instance-ID-Signature %s for instance %s from %s (via %s)",
            "missing" if not signature else "does not match",
            instance_id,
            address or "-",
            request.remote_addr,
        )
        raise errors.Forbidden("Invalid proxy request signature.")
    guest = _load(instance_id, address)
    if guest is None:
        LOG.info("metadata request for unknown instance %s from %s", instance_id, address or "-")
        raise errors.NotFound(f"Instance {instance_id} could not be found.")
    if guest.project_id != tenant_id:
        LOG.warning(
            "X-Tenant-ID %s does not match the project of instance %s", tenant_id, instance_id
        )
        raise errors.NotFound(f"Instance {instance_id} could not be found.")
    g.guest = guest


@bp.route("/", defaults={"path": ""}, methods=["GET"])
@bp.route("/<path:path>", methods=["GET"])
@public
def show(path: str) -> Response:
    guest: content.Guest = g.guest
    try:
        answer = content.lookup(guest, path)
    except content.NotFound:
        raise errors.NotFound("The resource could not be found.") from None
    return Response(answer.body, content_type=answer.content_type)


@bp.route("/openstack/<version>/password", methods=["POST"])
@public
def post_password(version: str) -> Response:
    """Guests (cloudbase-init) post their encrypted password here in Nova; Cirrus keeps none."""
    raise errors.BadRequest("Cirrus keeps no instance passwords.")
