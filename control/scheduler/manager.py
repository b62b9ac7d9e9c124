"""Host selection: filters, a weigher and an atomic claim (the scheduler's RPC endpoint).

Filters (all must pass): the host's compute service is enabled and up; the availability zone
matches when one is asked for; RAM, vCPUs and disk fit under the allocation ratios. The weigher
spreads servers: the host with the most free RAM (after the ratio) first. The best host is
claimed with a row lock (:mod:`control.compute.claims`); if a concurrent claim took the room
meanwhile the next host is tried, so concurrent boots never overcommit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from control.common.context import RequestContext
from control.common.db import Database, utcnow
from control.compute import claims, models, services

LOG = logging.getLogger("cirrus.scheduler")


class NoValidHost(Exception):
    """No host passed the filters, or none still had room when claimed."""

    rpc_expected = True


@dataclass
class HostCandidate:
    host: str
    node: str
    availability_zone: str
    free_ram: float


class SchedulerManager:
    """RPC endpoint of topic ``scheduler``."""

    target_version = "1.0"

    def __init__(
        self,
        database: Database,
        ratios: claims.Ratios | None = None,
        service_down_time: float = 60.0,
        max_attempts: int = 10,
    ) -> None:
        self.database = database
        self.ratios = ratios or claims.Ratios()
        self.service_down_time = service_down_time
        self.max_attempts = max_attempts

    def _columns(self) -> Any:
        node, service = models.ComputeNode, models.Service
        return select(
            node.host,
            node.hypervisor_hostname,
            node.vcpus,
            node.memory_mb,
            node.local_gb,
            node.vcpus_used,
            node.memory_mb_used,
            node.local_gb_used,
            service.disabled,
            service.forced_down,
            service.last_seen_up,
            service.availability_zone,
        ).join(
            service,
            (service.host == node.host) & (service.binary == services.COMPUTE_BINARY),
        )

    def _candidates(self, req: claims.Request, zone: str | None) -> list[HostCandidate]:
        """Hosts passing the filters, best first (at most ``max_attempts``).

        The filters and the weigher run in the database (one indexed scan, a few rows back), so
        a thousand hosts cost little more than ten. :meth:`_why` gives the per-filter account
        when nothing passes."""
        node, service = models.ComputeNode, models.Service
        ratios = self.ratios
        cutoff = utcnow() - timedelta(seconds=self.service_down_time)
        free_ram = node.memory_mb * ratios.ram - node.memory_mb_used
        query = (
            self._columns()
            .where(
                service.disabled.is_(False),
                service.forced_down.is_(False),
                service.last_seen_up >= cutoff,
                node.vcpus_used + req.vcpus <= node.vcpus * ratios.cpu,
                node.memory_mb_used + req.memory_mb <= node.memory_mb * ratios.ram,
                node.local_gb_used + req.disk_gb <= node.local_gb * ratios.disk,
            )
            .order_by(free_ram.desc(), node.host)
            .limit(self.max_attempts)
        )
        if zone:
            query = query.where(service.availability_zone == zone)
        with self.database.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            HostCandidate(
                row.host,
                row.hypervisor_hostname,
                row.availability_zone,
                row.memory_mb * ratios.ram - row.memory_mb_used,
            )
            for row in rows
        ]

    def _why(self, req: claims.Request, zone: str | None) -> str:
        """Why no host passed: how many hosts each filter rejected (for the server's fault)."""
        now = utcnow()
        down = timedelta(seconds=self.service_down_time)
        ratios = self.ratios
        rejected: dict[str, int] = {}
        with self.database.engine.connect() as conn:
            rows = conn.execute(self._columns()).all()
        for row in rows:
            reason: str | None = None
            if row.disabled:
                reason = "disabled"
            elif row.forced_down or row.last_seen_up is None or now - row.last_seen_up > down:
                reason = "down"
            elif zone and row.availability_zone != zone:
                reason = "in another availability zone"
            elif row.vcpus_used + req.vcpus > row.vcpus * ratios.cpu:
                reason = "without enough vcpus"
            elif row.memory_mb_used + req.memory_mb > row.memory_mb * ratios.ram:
                reason = "without enough ram"
            elif row.local_gb_used + req.disk_gb > row.local_gb * ratios.disk:
                reason = "without enough disk"
            else:
                reason = "taken by concurrent claims"
            rejected[reason] = rejected.get(reason, 0) + 1
        if not rows:
            return "there are no compute hosts"
        detail = ", ".join(f"{count} {what}" for what, count in sorted(rejected.items()))
        return f"{len(rows)} host(s) considered: {detail}"

    def select_destination(
        self, ctxt: RequestContext, request_spec: dict[str, Any]
    ) -> dict[str, Any]:
        """Choose a host for ``request_spec`` (``instance_uuid``, ``vcpus``, ``memory_mb``,
        ``disk_gb``, optional ``availability_zone``) and claim it. Idempotent by instance: a
        repeated request for a server already claimed answers the same host."""
        req = claims.Request(
            instance_uuid=str(request_spec["instance_uuid"]),
            vcpus=int(request_spec["vcpus"]),
            memory_mb=int(request_spec["memory_mb"]),
            disk_gb=int(request_spec.get("disk_gb", 0)),
        )
        with self.database.transaction() as sess:
            existing = sess.get(models.Allocation, req.instance_uuid)
            if existing is not None:
                return {"host": existing.host, "node": existing.host}
        zone = request_spec.get("availability_zone") or None
        for _round in range(3):
            candidates = self._candidates(req, zone)
            if not candidates:
                break
            for candidate in candidates:
                with self.database.transaction() as sess:
                    if claims.claim(sess, candidate.host, req, self.ratios):
                        LOG.info("placed %s on %s", req.instance_uuid, candidate.host)
                        return {"host": candidate.host, "node": candidate.node}
        why = self._why(req, zone)
        raise NoValidHost(
            f"No valid host was found. {why} (needed {req.vcpus} vCPUs, {req.memory_mb} MB RAM,"
            f" {req.disk_gb} GB disk)."
        )
