"""``/v3/auth``: issue, validate, check and revoke tokens; the caller's projects, domains and
catalog."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from control.common import db, errors, policy, validation
from control.common.app import public
from control.identity import models, passwords, render, service_catalog, tokens

bp = Blueprint("identity_auth", __name__, url_prefix="/v3/auth")

_REF = {
    "type": "object",
    "properties": {"id": validation.ID, "name": validation.NAME},
    "anyOf": [{"required": ["id"]}, {"required": ["name"]}],
}
_DOMAIN_REF = {
    "type": "object",
    "properties": {"id": validation.ID, "name": validation.NAME},
}

AUTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["auth"],
    "properties": {
        "auth": {
            "type": "object",
            "required": ["identity"],
            "properties": {
                "identity": {
                    "type": "object",
                    "required": ["methods"],
                    "properties": {
                        "methods": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "enum": ["password", "token"]},
                        },
                        "password": {
                            "type": "object",
                            "required": ["user"],
                            "properties": {
                                "user": {
                                    "type": "object",
                                    "required": ["password"],
                                    "properties": {
                                        "id": validation.ID,
                                        "name": validation.NAME,
                                        "password": {
                                            "type": "string",
                                            "maxLength": passwords.MAX_PASSWORD_LENGTH,
                                        },
                                        "domain": _DOMAIN_REF,
                                    },
                                    "anyOf": [{"required": ["id"]}, {"required": ["name"]}],
                                }
                            },
                        },
                        "token": {
                            "type": "object",
                            "required": ["id"],
                            "properties": {"id": {"type": "string", "maxLength": 1024}},
                        },
                    },
                },
                "scope": {
                    "oneOf": [
                        {"type": "string", "enum": ["unscoped"]},
                        {
                            "type": "object",
                            "properties": {
                                "project": {
                                    **_REF,
                                    "properties": {
                                        "id": validation.ID,
                                        "name": validation.NAME,
                                        "domain": _DOMAIN_REF,
                                    },
                                },
                                "domain": _REF,
                                "system": {"type": "object"},
                            },
                            "maxProperties": 1,
                        },
                    ]
                },
            },
        }
    },
}


def provider() -> tokens.TokenProvider:
    p: tokens.TokenProvider = current_app.extensions["cirrus.identity.tokens"]
    return p


def _find_domain(sess: Session, ref: dict[str, Any] | None, what: str) -> models.Domain:
    if not ref or not (ref.get("id") or ref.get("name")):
        raise errors.BadRequest(
            f"Invalid input for field '{what}.domain': a domain id or name is required"
        )
    if ref.get("id"):
        found = sess.get(models.Domain, ref["id"])
    else:
        found = sess.scalar(select(models.Domain).where(models.Domain.name == ref["name"]))
    if found is None:
        raise errors.Unauthorized(tokens.INVALID)
    return found


def _password_user(sess: Session, user_ref: dict[str, Any]) -> models.User:
    """The user whose password matches; one 401 for every failure so it reveals nothing."""
    user: models.User | None
    if user_ref.get("id"):
        user = sess.get(models.User, user_ref["id"])
    else:
        domain_ref = user_ref.get("domain")
        if not domain_ref or not (domain_ref.get("id") or domain_ref.get("name")):
            raise errors.BadRequest(
                "Invalid input for field 'auth.identity.password.user.domain': "
                "a user given by name needs its domain id or name"
            )
        if domain_ref.get("id"):
            domain_id = domain_ref["id"]
        else:
            domain_id = sess.scalar(
                select(models.Domain.id).where(models.Domain.name == domain_ref["name"])
            )
        user = sess.scalar(
            select(models.User).where(
                models.User.domain_id == domain_id, models.User.name == user_ref["name"]
            )
        )
    hashed = user.password_hash if user is not None else passwords.DUMMY_HASH
    if not passwords.check_password(user_ref["password"], hashed) or user is None:
        raise errors.Unauthorized(tokens.INVALID)
    if not user.enabled:
        raise errors.Unauthorized(tokens.INVALID)
    domain = sess.get(models.Domain, user.domain_id)
    if domain is None or not domain.enabled:
        raise errors.Unauthorized(tokens.INVALID)
    return user


def _resolve_scope(sess: Session, user: models.User, scope: Any) -> tuple[str | None, str | None]:
    """(project_id, domain_id) of the requested scope, checked for existence and a role."""
    if scope == "unscoped":
        return None, None
    if not scope:
        if user.default_project_id:
            project = sess.get(models.Project, user.default_project_id)
            if (
                project is not None
                and project.enabled
                and tokens.effective_roles(sess, user.id, "project", project.id)
            ):
                return project.id, None
        return None, None
    if "system" in scope:
        raise errors.BadRequest(
            "Invalid input for field 'auth.scope.system': system scope is not supported"
        )
    if "project" in scope:
        ref = scope["project"]
        if ref.get("id"):
            project = sess.get(models.Project, ref["id"])
        else:
            domain = _find_domain(sess, ref.get("domain"), "auth.scope.project")
            project = sess.scalar(
                select(models.Project).where(
                    models.Project.domain_id == domain.id, models.Project.name == ref["name"]
                )
            )
        if project is None or not project.enabled:
            raise errors.Unauthorized(
                "The user has no access to the requested project, or it is disabled."
            )
        domain_row = sess.get(models.Domain, project.domain_id)
        if domain_row is None or not domain_row.enabled:
            raise errors.Unauthorized(
                "The user has no access to the requested project, or it is disabled."
            )
        if not tokens.effective_roles(sess, user.id, "project", project.id):
            raise errors.Unauthorized(
                "The user has no access to the requested project, or it is disabled."
            )
        return project.id, None
    ref = scope["domain"]
    if ref.get("id"):
        domain_found = sess.get(models.Domain, ref["id"])
    else:
        domain_found = sess.scalar(select(models.Domain).where(models.Domain.name == ref["name"]))
    if (
        domain_found is None
        or not domain_found.enabled
        or not tokens.effective_roles(sess, user.id, "domain", domain_found.id)
    ):
        raise errors.Unauthorized(
            "The user has no access to the requested domain, or it is disabled."
        )
    return None, domain_found.id


def _token_response(sess: Session, token: str, data: tokens.TokenData, status: int) -> Response:
    validated = tokens.validate(sess, provider(), token)
    include_catalog = "nocatalog" not in request.args
    response = jsonify({"token": tokens.body(sess, validated, include_catalog)})
    response.status_code = status
    response.headers["X-Subject-Token"] = token
    return response


@bp.post("/tokens")
@public
def issue_token() -> Response:
    body = validation.validated_body(AUTH_SCHEMA)
    auth = body["auth"]
    identity = auth["identity"]
    methods: list[str] = identity["methods"]
    sess = db.session()
    parent: tokens.TokenData | None = None
    if "password" in methods:
        if "password" not in identity:
            raise errors.BadRequest(
                "Invalid input for field 'auth.identity.password': required by method 'password'"
            )
        user = _password_user(sess, identity["password"]["user"])
    elif "token" in methods:
        if "token" not in identity:
            raise errors.BadRequest(
                "Invalid input for field 'auth.identity.token': required by method 'token'"
            )
        parent_validated = tokens.validate(sess, provider(), identity["token"]["id"])
        parent = parent_validated.data
        user = parent_validated.user
    else:  # pragma: no cover - the schema admits only the two methods
        raise errors.BadRequest("Invalid input for field 'auth.identity.methods'")
    project_id, domain_id = _resolve_scope(sess, user, auth.get("scope"))
    token_methods = list(dict.fromkeys((parent.methods if parent else []) + methods))
    token, data = provider().issue(user.id, token_methods, project_id, domain_id, parent)
    return _token_response(sess, token, data, 201)


def _subject() -> tokens.ValidatedToken:
    subject = request.headers.get("X-Subject-Token")
    if not subject:
        raise errors.BadRequest("The X-Subject-Token header is required.")
    try:
        validated = tokens.validate(db.session(), provider(), subject)
    except errors.Unauthorized:
        raise errors.NotFound(
            "The token in X-Subject-Token is not valid: "
            "it has expired, was revoked or never existed."
        ) from None
    return validated


@bp.get("/tokens")
def validate_token() -> Response:
    """GET validates and returns the token; HEAD (answered by the same view) only checks."""
    subject = _subject()
    policy.enforce("identity:validate_token", {"token_user_id": subject.user.id})
    include_catalog = "nocatalog" not in request.args
    response = jsonify({"token": tokens.body(db.session(), subject, include_catalog)})
    response.headers["X-Subject-Token"] = request.headers["X-Subject-Token"]
    return response


@bp.delete("/tokens")
def revoke_token() -> Response:
    subject = _subject()
    policy.enforce("identity:revoke_token", {"token_user_id": subject.user.id})
    tokens.revoke_token(db.session(), subject.data)
    db.commit()
    return Response(status=204)


@bp.get("/catalog")
def auth_catalog() -> Response:
    policy.enforce("identity:get_auth_catalog")
    validated: tokens.ValidatedToken = g.token
    if validated.scope_target is None:
        raise errors.Forbidden("An unscoped token has no catalog: scope it to a project first.")
    project_id = validated.project.id if validated.project else None
    return jsonify(
        {
            "catalog": service_catalog.build(db.session(), project_id),
            "links": render.collection_links("auth/catalog"),
        }
    )


@bp.get("/projects")
def auth_projects() -> Response:
    policy.enforce("identity:get_auth_projects")
    sess = db.session()
    ctxt_user = g.token.user
    ids = sess.scalars(
        select(models.RoleAssignment.target_id).where(
            models.RoleAssignment.user_id == ctxt_user.id,
            models.RoleAssignment.target_type == "project",
        )
    ).all()
    projects = sess.scalars(
        select(models.Project)
        .where(models.Project.id.in_(set(ids)), models.Project.enabled.is_(True))
        .order_by(models.Project.name)
    ).all()
    return jsonify(
        {
            "projects": [render.project(p) for p in projects],
            "links": render.collection_links("auth/projects"),
        }
    )


@bp.get("/domains")
def auth_domains() -> Response:
    policy.enforce("identity:get_auth_domains")
    sess = db.session()
    ids = sess.scalars(
        select(models.RoleAssignment.target_id).where(
            models.RoleAssignment.user_id == g.token.user.id,
            models.RoleAssignment.target_type == "domain",
        )
    ).all()
    domains = sess.scalars(
        select(models.Domain).where(models.Domain.id.in_(set(ids)), models.Domain.enabled.is_(True))
    ).all()
    return jsonify(
        {
            "domains": [render.domain(d) for d in domains],
            "links": render.collection_links("auth/domains"),
        }
    )
