"""Quotas: each project's limits (the configured defaults, overridden per project), what it uses
(counted from its servers and its users' key pairs) and the check made before creating."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control.common import errors
from control.compute import models


def limits(sess: Session, project_id: str, defaults: dict[str, int]) -> dict[str, int]:
    values = dict(defaults)
    for row in sess.scalars(select(models.Quota).where(models.Quota.project_id == project_id)):
        if row.resource in values:
            values[row.resource] = row.hard_limit
    return values


def usage(sess: Session, project_id: str, user_id: str | None = None) -> dict[str, int]:
    count, cores, ram = sess.execute(
        select(
            func.count(models.Instance.uuid),
            func.coalesce(func.sum(models.Instance.vcpus), 0),
            func.coalesce(func.sum(models.Instance.memory_mb), 0),
        ).where(
            models.Instance.project_id == project_id,
            models.Instance.vm_state != models.DELETED,
        )
    ).one()
    used = {"instances": int(count), "cores": int(cores), "ram": int(ram)}
    if user_id is not None:
        used["key_pairs"] = int(
            sess.scalar(
                select(func.count(models.KeyPair.id)).where(models.KeyPair.user_id == user_id)
            )
            or 0
        )
    return used


def check(
    sess: Session,
    project_id: str,
    defaults: dict[str, int],
    deltas: dict[str, int],
    user_id: str | None = None,
) -> None:
    """Raise 403 naming the first quota ``deltas`` would exceed (-1 means unlimited)."""
    hard = limits(sess, project_id, defaults)
    used = usage(sess, project_id, user_id)
    for resource, delta in deltas.items():
        limit = hard.get(resource, -1)
        if limit < 0:
            continue
        already = used.get(resource, 0)
        if already + delta > limit:
            raise errors.Forbidden(
                f"Quota exceeded for {resource}: Requested {delta}, but already used "
                f"{already} of {limit} {resource}"
            )
