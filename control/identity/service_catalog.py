"""The service catalog carried in tokens and served at ``/v3/auth/catalog``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control.identity import models

PROJECT_TEMPLATES = ("$(project_id)s", "$(tenant_id)s", "%(project_id)s", "%(tenant_id)s")


def _substitute(url: str, project_id: str | None) -> str | None:
    """Fill the project id into a templated URL; ``None`` if the URL needs one and has none."""
    if not any(t in url for t in PROJECT_TEMPLATES):
        return url
    if project_id is None:
        return None
    for template in PROJECT_TEMPLATES:
        url = url.replace(template, project_id)
    return url


def build(sess: Session, project_id: str | None) -> list[dict[str, Any]]:
    services = sess.scalars(select(models.Service).where(models.Service.enabled.is_(True))).all()
    endpoints = sess.scalars(select(models.Endpoint).where(models.Endpoint.enabled.is_(True))).all()
    by_service: dict[str, list[models.Endpoint]] = {}
    for endpoint in endpoints:
        by_service.setdefault(endpoint.service_id, []).append(endpoint)
    catalog = []
    for service in sorted(services, key=lambda s: (s.type, s.id)):
        entries = []
        for endpoint in by_service.get(service.id, []):
            url = _substitute(endpoint.url, project_id)
            if url is None:
                continue
            entries.append(
                {
                    "id": endpoint.id,
                    "interface": endpoint.interface,
                    "region_id": endpoint.region_id,
                    "region": endpoint.region_id,
                    "url": url,
                }
            )
        if not entries:
            continue
        catalog.append(
            {
                "id": service.id,
                "type": service.type,
                "name": service.name or "",
                "endpoints": entries,
            }
        )
    return catalog
