"""``/os-keypairs``: import (``public_key``), list, show and delete a user's key pairs.

Key pairs belong to a user, not a project. Generating a key on the server (a body without
``public_key``) is refused: clients generate locally and send the public half, as the CLI does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy import select

from control.common import db, errors, policy, validation
from control.compute import models, quota
from control.compute.api import common

bp = Blueprint("compute_keypairs", __name__, url_prefix="/v2.1")

CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "keypair": {
            "type": "object",
            "properties": {
                "name": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": r"^[a-zA-Z0-9 _.@-]+$",
                },
                "public_key": {"type": "string", "minLength": 1},
                "type": {"type": "string", "enum": ["ssh", "x509"]},
                "user_id": {"type": "string"},
            },
            "required": ["name"],
            "additionalProperties": False,
        }
    },
    "required": ["keypair"],
    "additionalProperties": False,
}

_KEY_TYPES = (
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


def fingerprint(public_key: str) -> str:
    """Nova's fingerprint: the MD5 of the key blob as colon-separated hex."""
    parts = public_key.strip().split()
    if len(parts) < 2 or parts[0] not in _KEY_TYPES:
        raise errors.BadRequest("Keypair data is invalid: not an OpenSSH public key.")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise errors.BadRequest("Keypair data is invalid: the key is not valid base64.") from None
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def render(key: models.KeyPair, detail: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": key.name,
        "public_key": key.public_key,
        "fingerprint": key.fingerprint,
        "type": key.type,
    }
    if detail:
        body.update(
            {
                "user_id": key.user_id,
                "id": key.id,
                "created_at": key.created_at.isoformat(),
                "deleted": False,
                "deleted_at": None,
                "updated_at": None,
            }
        )
    return body


def _target_user() -> str:
    wanted = request.args.get("user_id")
    if wanted and wanted != common.user_id():
        policy.enforce("context_is_admin")
        return wanted
    return common.user_id()


def find(user_id: str, name: str) -> models.KeyPair:
    key = (
        db.session()
        .scalars(
            select(models.KeyPair).where(
                models.KeyPair.user_id == user_id, models.KeyPair.name == name
            )
        )
        .first()
    )
    if key is None:
        raise errors.NotFound(f"Keypair {name} not found for user {user_id}")
    return key


@bp.get("/os-keypairs")
def index() -> Response:
    user = _target_user()
    policy.enforce("os_compute_api:os-keypairs:index", {"user_id": user})
    keys = db.session().scalars(
        select(models.KeyPair).where(models.KeyPair.user_id == user).order_by(models.KeyPair.name)
    )
    return common.respond({"keypairs": [{"keypair": render(k, detail=False)} for k in keys]})


@bp.get("/os-keypairs/<name>")
def show(name: str) -> Response:
    user = _target_user()
    policy.enforce("os_compute_api:os-keypairs:show", {"user_id": user})
    return common.respond({"keypair": render(find(user, name))})


@bp.post("/os-keypairs")
def create() -> Response:
    body = validation.validated_body(CREATE_SCHEMA)["keypair"]
    user = body.get("user_id") or common.user_id()
    if user != common.user_id():
        policy.enforce("context_is_admin")
    policy.enforce("os_compute_api:os-keypairs:create", {"user_id": user})
    public_key = body.get("public_key")
    if not public_key:
        raise errors.BadRequest(
            "Generating key pairs on the server is not supported: send 'public_key'."
        )
    sess = db.session()
    quota.check(sess, common.project_id(), common.settings().quota_defaults, {"key_pairs": 1}, user)
    key = models.KeyPair(
        user_id=user,
        name=body["name"],
        public_key=public_key.strip(),
        fingerprint=fingerprint(public_key),
        type=body.get("type", "ssh"),
    )
    sess.add(key)
    db.commit(f"Key pair '{body['name']}' already exists.")
    return common.respond({"keypair": render(key, detail=False) | {"user_id": user}})


@bp.delete("/os-keypairs/<name>")
def delete(name: str) -> Response:
    user = _target_user()
    policy.enforce("os_compute_api:os-keypairs:delete", {"user_id": user})
    db.session().delete(find(user, name))
    db.commit()
    return Response(status=202)
