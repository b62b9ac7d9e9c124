"""Placing a volume on a storage host, inside the API's transaction (Cinder's filter scheduler
reduced to what Cirrus needs).

A host qualifies when its ``cinder-volume`` service is enabled and up (a report within
``service_down_time`` seconds), is in the volume's availability zone, and has the backend the
volume type asks for (extra spec ``volume_backend_name``, compared with the reported
``backend_name``). Among those, the one with the most free capacity wins, where

    free = total_capacity_gb * max_over_subscription_ratio - sum(sizes of its volumes in the DB)

and the volume must fit in it. The service rows are locked (``SELECT ... FOR UPDATE``) and the
sizes summed in a READ COMMITTED transaction, and ``volumes.host`` is written in the same
transaction: two concurrent creates are placed one after the other, so a host is never promised
more than it has. No host qualifies: the caller marks the volume ``error`` (Cinder's
``No valid backend was found``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control.common.db import utcnow
from control.volume import models

BINARY = "cinder-volume"


@dataclass
class Placement:
    host: str | None
    reason: str = ""


def is_up(service: models.Service, down_time: float, now: datetime | None = None) -> bool:
    last = service.updated_at or service.created_at
    return (now or utcnow()) - last <= timedelta(seconds=down_time)


def allocated_gb(sess: Session, host: str, exclude: str | None = None) -> int:
    query = select(func.coalesce(func.sum(models.Volume.size), 0)).where(models.Volume.host == host)
    if exclude is not None:
        query = query.where(models.Volume.id != exclude)
    return int(sess.scalar(query) or 0)


def schedule(
    sess: Session,
    volume: models.Volume,
    backend_name: str | None,
    down_time: float,
    ratio: float,
) -> Placement:
    """Pick the host of ``volume`` (not written here); the reason when none qualifies."""
    services = sess.scalars(
        select(models.Service)
        .where(models.Service.binary == BINARY)
        .order_by(models.Service.host)
        .with_for_update()
    ).all()
    if not services:
        return Placement(None, "No valid backend was found. No volume service is registered.")
    now = utcnow()
    best: tuple[float, str] | None = None
    rejected: list[str] = []
    for service in services:
        if service.disabled:
            rejected.append(f"{service.host}: disabled")
            continue
        if not is_up(service, down_time, now):
            rejected.append(f"{service.host}: down")
            continue
        if backend_name and service.backend_name != backend_name:
            rejected.append(f"{service.host}: backend {service.backend_name} != {backend_name}")
            continue
        if volume.availability_zone and service.availability_zone != volume.availability_zone:
            rejected.append(f"{service.host}: zone {service.availability_zone}")
            continue
        free = service.total_capacity_gb * ratio - allocated_gb(sess, service.host, volume.id)
        if free < volume.size:
            rejected.append(f"{service.host}: {free:g}G free")
            continue
        if best is None or free > best[0]:
            best = (free, service.host)
    if best is None:
        return Placement(
            None,
            f"No valid backend was found for a {volume.size}G volume ({'; '.join(rejected)}).",
        )
    return Placement(best[1])


def host_is_up(sess: Session, host: str, down_time: float) -> bool:
    service = sess.scalars(
        select(models.Service).where(models.Service.binary == BINARY, models.Service.host == host)
    ).first()
    return service is not None and not service.disabled and is_up(service, down_time)
