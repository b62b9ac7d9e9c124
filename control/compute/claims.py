"""Claims of host resources, made and released in one database transaction each.

A claim locks the host's :class:`~control.compute.models.ComputeNode` row (``SELECT ... FOR
UPDATE``), checks that the server still fits under the allocation ratios, adds the server's
resources to the ``*_used`` columns and records an :class:`~control.compute.models.Allocation`.
Two concurrent claims on the same host are serialised by the row lock, so a host can never be
overcommitted whatever the scheduler saw when it chose. Releasing is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from control.compute import models


@dataclass(frozen=True)
class Ratios:
    cpu: float = 16.0
    ram: float = 1.5
    disk: float = 1.0


@dataclass(frozen=True)
class Request:
    instance_uuid: str
    vcpus: int
    memory_mb: int
    disk_gb: int


def fits(node: models.ComputeNode, req: Request, ratios: Ratios) -> str | None:
    """None if ``req`` fits on ``node``, else why not."""
    if node.vcpus_used + req.vcpus > node.vcpus * ratios.cpu:
        return "vcpus"
    if node.memory_mb_used + req.memory_mb > node.memory_mb * ratios.ram:
        return "ram"
    if node.local_gb_used + req.disk_gb > node.local_gb * ratios.disk:
        return "disk"
    return None


def claim(sess: Session, host: str, req: Request, ratios: Ratios) -> bool:
    """Claim ``req`` on ``host`` inside the caller's transaction; False if it no longer fits.
    An existing allocation of the same server (a repeated request) counts as success."""
    node = sess.scalars(
        select(models.ComputeNode).where(models.ComputeNode.host == host).with_for_update()
    ).first()
    if node is None:
        return False
    existing = sess.get(models.Allocation, req.instance_uuid)
    if existing is not None:
        return existing.host == host
    if fits(node, req, ratios) is not None:
        return False
    node.vcpus_used += req.vcpus
    node.memory_mb_used += req.memory_mb
    node.local_gb_used += req.disk_gb
    sess.add(
        models.Allocation(
            instance_uuid=req.instance_uuid,
            host=host,
            vcpus=req.vcpus,
            memory_mb=req.memory_mb,
            disk_gb=req.disk_gb,
        )
    )
    sess.flush()
    return True


def release(sess: Session, instance_uuid: str) -> bool:
    """Give back the claim of ``instance_uuid`` (inside the caller's transaction); False when
    there was none."""
    allocation = sess.scalars(
        select(models.Allocation)
        .where(models.Allocation.instance_uuid == instance_uuid)
        .with_for_update()
    ).first()
    if allocation is None:
        return False
    node = sess.scalars(
        select(models.ComputeNode)
        .where(models.ComputeNode.host == allocation.host)
        .with_for_update()
    ).first()
    if node is not None:
        node.vcpus_used = max(0, node.vcpus_used - allocation.vcpus)
        node.memory_mb_used = max(0, node.memory_mb_used - allocation.memory_mb)
        node.local_gb_used = max(0, node.local_gb_used - allocation.disk_gb)
    sess.delete(allocation)
    sess.flush()
    return True
