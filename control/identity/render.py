"""How identity resources look on the wire (Keystone v3 bodies)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import request

from control.identity import models


def base_url() -> str:
    return request.host_url.rstrip("/")


def link(path: str) -> dict[str, str]:
    return {"self": f"{base_url()}/v3/{path}"}


def collection_links(path: str) -> dict[str, Any]:
    return {"self": f"{base_url()}/v3/{path}", "previous": None, "next": None}


def isotime(value: datetime | None) -> str | None:
    """``2030-01-01T00:00:00.000000Z``: UTC with microseconds, as tempest expects."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def domain(d: models.Domain) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": d.name,
        "description": d.description or "",
        "enabled": d.enabled,
        "tags": [],
        "options": {},
        "links": link(f"domains/{d.id}"),
    }


def project(p: models.Project) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "domain_id": p.domain_id,
        "description": p.description or "",
        "enabled": p.enabled,
        "parent_id": p.parent_id or p.domain_id,
        "is_domain": False,
        "tags": list(p.tags or []),
        "options": {},
        "links": link(f"projects/{p.id}"),
    }


def user(u: models.User) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": u.id,
        "name": u.name,
        "domain_id": u.domain_id,
        "enabled": u.enabled,
        "password_expires_at": None,
        "options": dict(u.options or {}),
        "links": link(f"users/{u.id}"),
    }
    if u.default_project_id:
        body["default_project_id"] = u.default_project_id
    if u.description is not None:
        body["description"] = u.description
    if u.email is not None:
        body["email"] = u.email
    return body


def role(r: models.Role) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "domain_id": None,
        "description": r.description,
        "options": {},
        "links": link(f"roles/{r.id}"),
    }


def region(r: models.Region) -> dict[str, Any]:
    return {
        "id": r.id,
        "description": r.description or "",
        "parent_region_id": r.parent_region_id,
        "links": link(f"regions/{r.id}"),
    }


def service(s: models.Service) -> dict[str, Any]:
    return {
        "id": s.id,
        "type": s.type,
        "name": s.name,
        "description": s.description,
        "enabled": s.enabled,
        "links": link(f"services/{s.id}"),
    }


def endpoint(e: models.Endpoint) -> dict[str, Any]:
    return {
        "id": e.id,
        "service_id": e.service_id,
        "interface": e.interface,
        "region_id": e.region_id,
        "region": e.region_id,
        "url": e.url,
        "enabled": e.enabled,
        "links": link(f"endpoints/{e.id}"),
    }
