"""Quotas: each project's limits (the configured defaults, overridden per project), what it uses
(counted from its rows) and the check made before creating. Neutron's defaults and its answer
when over: ``409 OverQuota "Quota exceeded for resources: ['network']."``.

The check counts then inserts, as Neutron without reservations: two concurrent creates at the
limit may both pass. The default security group and its rules count but are never refused.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control.common import errors
from control.network import models

DEFAULT_QUOTAS = {
    "network": 100,
    "subnet": 100,
    "port": 500,
    "router": 10,
    "floatingip": 50,
    "security_group": 10,
    "security_group_rule": 100,
}

_MODELS: dict[str, Any] = {
    "network": models.Network,
    "subnet": models.Subnet,
    "port": models.Port,
    "router": models.Router,
    "floatingip": models.FloatingIP,
    "security_group": models.SecurityGroup,
    "security_group_rule": models.SecurityGroupRule,
}


def limits(sess: Session, project_id: str, defaults: dict[str, int]) -> dict[str, int]:
    values = dict(defaults)
    for row in sess.scalars(select(models.Quota).where(models.Quota.project_id == project_id)):
        if row.resource in values:
            values[row.resource] = row.limit
    return values


def used(sess: Session, project_id: str, resource: str) -> int:
    model = _MODELS[resource]
    return int(sess.scalar(select(func.count(model.id)).where(model.project_id == project_id)) or 0)


def usage(sess: Session, project_id: str) -> dict[str, int]:
    return {resource: used(sess, project_id, resource) for resource in _MODELS}


def check(sess: Session, project_id: str, defaults: dict[str, int], deltas: dict[str, int]) -> None:
    """409 OverQuota naming every resource ``deltas`` would take over its limit (-1: none)."""
    hard = limits(sess, project_id, defaults)
    over = [
        resource
        for resource, delta in deltas.items()
        if hard.get(resource, -1) >= 0 and used(sess, project_id, resource) + delta > hard[resource]
    ]
    if over:
        raise errors.Conflict(
            f"Quota exceeded for resources: {sorted(over)!r}.", error_type="OverQuota"
        )
