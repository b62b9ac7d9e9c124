"""Quotas: each project's limits (the configured defaults, overridden per project by admins), what
it uses (counted from its rows: volumes, their gigabytes plus its snapshots' gigabytes, as Cinder
counts them) and the check made before creating or growing.

Concurrency: the check runs after :func:`lock_project` locked the project's row in
``project_locks`` (``SELECT ... FOR UPDATE``, held until the request commits), in a READ COMMITTED
transaction, so two creates of one project are counted one after the other and cannot both pass
at the limit. Cinder's answers when over: 413 ``VolumeLimitExceeded``,
``VolumeSizeExceedsAvailableQuota``, ``SnapshotLimitExceeded``.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from control.common import errors
from control.volume import models

DEFAULT_QUOTAS = {"volumes": 10, "gigabytes": 1000, "snapshots": 10, "per_volume_gigabytes": -1}
RESOURCES = tuple(DEFAULT_QUOTAS)


def limits(sess: Session, project_id: str, defaults: dict[str, int]) -> dict[str, int]:
    values = dict(defaults)
    for row in sess.scalars(select(models.Quota).where(models.Quota.project_id == project_id)):
        if row.resource in values:
            values[row.resource] = row.hard_limit
    return values


def usage(sess: Session, project_id: str) -> dict[str, int]:
    volumes, volume_gb = sess.execute(
        select(func.count(models.Volume.id), func.coalesce(func.sum(models.Volume.size), 0)).where(
            models.Volume.project_id == project_id
        )
    ).one()
    snapshots, snapshot_gb = sess.execute(
        select(
            func.count(models.Snapshot.id), func.coalesce(func.sum(models.Snapshot.size), 0)
        ).where(models.Snapshot.project_id == project_id)
    ).one()
    return {
        "volumes": int(volumes),
        "gigabytes": int(volume_gb) + int(snapshot_gb),
        "snapshots": int(snapshots),
        "per_volume_gigabytes": 0,
    }


def lock_project(sess: Session, engine: Engine, project_id: str) -> None:
    """Lock the project's quota row until ``sess`` commits (the row is made first, in a short
    transaction of its own, so that two first requests never deadlock on a gap lock)."""
    if sess.get(models.ProjectLock, project_id) is None:
        with engine.begin() as conn:
            conn.execute(
                mysql.insert(models.ProjectLock).prefix_with("IGNORE").values(project_id=project_id)
            )
    sess.execute(
        select(models.ProjectLock.project_id)
        .where(models.ProjectLock.project_id == project_id)
        .with_for_update()
    )


def check(
    sess: Session,
    project_id: str,
    defaults: dict[str, int],
    volumes: int = 0,
    gigabytes: int = 0,
    snapshots: int = 0,
    size: int | None = None,
) -> None:
    """413 naming the quota ``volumes``/``gigabytes``/``snapshots`` the request would exceed
    (a limit of -1 is none). ``size``: the size of the one volume made or grown."""
    hard = limits(sess, project_id, defaults)
    per_volume = hard.get("per_volume_gigabytes", -1)
    if size is not None and 0 <= per_volume < size:
        raise errors.PayloadTooLarge(
            f"Requested volume size {size}G is larger than maximum allowed limit {per_volume}G.",
            error_type="VolumeSizeExceedsLimit",
        )
    used = usage(sess, project_id)
    if volumes and 0 <= hard["volumes"] < used["volumes"] + volumes:
        raise errors.PayloadTooLarge(
            f"VolumeLimitExceeded: Maximum number of volumes allowed ({hard['volumes']}) "
            "exceeded for quota 'volumes'.",
            error_type="VolumeLimitExceeded",
        )
    if snapshots and 0 <= hard["snapshots"] < used["snapshots"] + snapshots:
        raise errors.PayloadTooLarge(
            f"SnapshotLimitExceeded: Maximum number of snapshots allowed ({hard['snapshots']}) "
            "exceeded for quota 'snapshots'.",
            error_type="SnapshotLimitExceeded",
        )
    if gigabytes and 0 <= hard["gigabytes"] < used["gigabytes"] + gigabytes:
        raise errors.PayloadTooLarge(
            "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed "
            f"gigabytes quota. Requested {gigabytes}G, quota is {hard['gigabytes']}G and "
            f"{used['gigabytes']}G has been consumed.",
            error_type="VolumeSizeExceedsAvailableQuota",
        )
