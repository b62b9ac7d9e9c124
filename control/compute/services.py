"""Service records (``os-services``): heartbeats and the up/down rule, shared by compute-api, the
scheduler and the conductor."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from control.common.db import utcnow
from control.compute import models

COMPUTE_BINARY = "nova-compute"
SCHEDULER_BINARY = "nova-scheduler"
CONDUCTOR_BINARY = "nova-conductor"


def is_up(service: models.Service, down_time: float, now: datetime | None = None) -> bool:
    if service.forced_down or service.last_seen_up is None:
        return False
    return (now or utcnow()) - service.last_seen_up <= timedelta(seconds=down_time)


def heartbeat(
    sess: Session, host: str, binary: str, availability_zone: str | None = None
) -> models.Service:
    """Create or refresh the service row (inside the caller's transaction)."""
    service = sess.scalars(
        select(models.Service).where(models.Service.host == host, models.Service.binary == binary)
    ).first()
    if service is None:
        service = models.Service(
            uuid=str(uuid.uuid4()),
            host=host,
            binary=binary,
            topic=binary.removeprefix("nova-"),
            availability_zone=availability_zone or "nova",
        )
        sess.add(service)
    elif availability_zone and service.availability_zone != availability_zone:
        service.availability_zone = availability_zone
    service.last_seen_up = utcnow()
    return service
