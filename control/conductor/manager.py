"""The conductor's RPC endpoint (topic ``conductor``) and its periodic sweep.

Compute agents hold no database credentials: every state change of a server, every action
event and every heartbeat comes here. Handlers are idempotent (at-least-once delivery): updates
set absolute values, releasing a claim twice is harmless, destroying a gone server is a no-op.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from control.common.context import RequestContext
from control.common.db import Database, utcnow
from control.compute import claims, models, services

LOG = logging.getLogger("cirrus.conductor")

#: What an agent may change on a server.
UPDATABLE = {"vm_state", "task_state", "power_state", "progress"}


def add_fault(sess: Any, instance: models.Instance, message: str, details: str | None) -> None:
    sess.add(
        models.InstanceFault(
            instance_uuid=instance.uuid,
            code=500,
            message=message[:255],
            details=details if details is not None else (message if len(message) > 255 else None),
        )
    )


def set_error(
    sess: Any, instance: models.Instance, message: str, details: str | None = None
) -> None:
    """ERROR with a fault, and the claim released (inside the caller's transaction)."""
    instance.vm_state = models.ERROR
    instance.task_state = None
    add_fault(sess, instance, message, details)
    claims.release(sess, instance.uuid)


class ConductorManager:
    target_version = "1.0"

    def __init__(self, database: Database) -> None:
        self.database = database

    def service_heartbeat(
        self,
        ctxt: RequestContext,
        host: str,
        binary: str,
        availability_zone: str | None = None,
        resources: dict[str, Any] | None = None,
        power_states: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Refresh the service row; for a compute host, its node's capacity and the power
        states of its guests. Answers whether the service is disabled."""
        with self.database.transaction() as sess:
            service = services.heartbeat(sess, host, binary, availability_zone)
            if resources is not None:
                node = sess.scalars(
                    select(models.ComputeNode).where(models.ComputeNode.host == host)
                ).first()
                if node is None:
                    node = models.ComputeNode(
                        uuid=service.uuid,
                        host=host,
                        vcpus_used=0,
                        memory_mb_used=0,
                        local_gb_used=0,
                    )
                    sess.add(node)
                node.hypervisor_hostname = str(resources.get("hostname", host))
                node.hypervisor_type = str(resources.get("hypervisor_type", "QEMU"))
                node.hypervisor_version = int(resources.get("hypervisor_version", 0))
                node.host_ip = resources.get("host_ip")
                node.vcpus = int(resources["vcpus"])
                node.memory_mb = int(resources["memory_mb"])
                node.local_gb = int(resources["local_gb"])
                node.cpu_info = json.dumps(resources.get("cpu_info", {}))
                node.running_vms = len(power_states or {})
                node.updated_at = utcnow()
            return {"disabled": service.disabled}

    def instance_update(
        self,
        ctxt: RequestContext,
        instance_uuid: str,
        updates: dict[str, Any],
        expected_task_state: list[str | None] | None = None,
    ) -> bool:
        """Set states of a server; ``launched_at: true`` stamps the launch time. False when the
        server is gone or its task state is not an expected one."""
        with self.database.transaction() as sess:
            instance = sess.get(models.Instance, instance_uuid, with_for_update=True)
            if instance is None:
                return False
            if expected_task_state is not None and instance.task_state not in expected_task_state:
                return False
            for key, value in updates.items():
                if key in UPDATABLE:
                    setattr(instance, key, value)
            if updates.get("launched_at"):
                instance.launched_at = utcnow()
            return True

    def instance_build_failed(
        self, ctxt: RequestContext, instance_uuid: str, message: str, details: str | None = None
    ) -> None:
        with self.database.transaction() as sess:
            instance = sess.get(models.Instance, instance_uuid, with_for_update=True)
            if instance is None:
                claims.release(sess, instance_uuid)
                return
            set_error(sess, instance, message, details)

    def instance_destroyed(self, ctxt: RequestContext, instance_uuid: str) -> None:
        with self.database.transaction() as sess:
            claims.release(sess, instance_uuid)
            instance = sess.get(models.Instance, instance_uuid)
            if instance is not None:
                sess.delete(instance)

    def action_event(
        self,
        ctxt: RequestContext,
        instance_uuid: str,
        event: str,
        host: str,
        result: str | None = None,
    ) -> None:
        with self.database.transaction() as sess:
            action = sess.scalars(
                select(models.InstanceAction).where(
                    models.InstanceAction.instance_uuid == instance_uuid,
                    models.InstanceAction.request_id == ctxt.request_id,
                )
            ).first()
            if action is None:
                return
            found = [e for e in action.events if e.event == event]
            if result is None:
                if not found:
                    action.events.append(models.InstanceActionEvent(event=event, host=host))
                return
            row = found[-1] if found else models.InstanceActionEvent(event=event, host=host)
            if not found:
                action.events.append(row)
            row.result = result
            row.finish_time = utcnow()
            action.finish_time = row.finish_time
            if result != "Success":
                action.message = "Error"

    def get_host_instances(self, ctxt: RequestContext, host: str) -> dict[str, dict[str, Any]]:
        with self.database.transaction() as sess:
            rows = sess.scalars(select(models.Instance).where(models.Instance.host == host))
            return {
                i.uuid: {
                    "vm_state": i.vm_state,
                    "task_state": i.task_state,
                    "power_state": i.power_state,
                }
                for i in rows
            }

    # -- periodic ------------------------------------------------------------------------------

    def sweep_stale_builds(self, build_timeout: float, service_down_time: float) -> list[str]:
        """Servers in BUILD too long, or whose host stopped heartbeating, go ERROR with a fault
        and release their claim. Returns their ids. Not an RPC method (run on a timer)."""
        now = utcnow()
        failed: list[str] = []
        with self.database.transaction() as sess:
            building = list(
                sess.scalars(
                    select(models.Instance)
                    .where(models.Instance.vm_state == models.BUILDING)
                    .with_for_update(skip_locked=True)
                )
            )
            if not building:
                return failed
            hosts = {i.host for i in building if i.host}
            down: set[str] = set()
            for service in sess.scalars(
                select(models.Service).where(
                    models.Service.host.in_(hosts),
                    models.Service.binary == services.COMPUTE_BINARY,
                )
            ):
                if not services.is_up(service, service_down_time, now):
                    down.add(service.host)
            for instance in building:
                message = None
                if instance.host in down:
                    message = (
                        f"Build failed: the compute service on host {instance.host} stopped "
                        "reporting during the build."
                    )
                elif now - instance.created_at > timedelta(seconds=build_timeout):
                    message = f"Build timed out after {build_timeout:g} seconds."
                if message is not None:
                    LOG.warning("server %s: %s", instance.uuid, message)
                    set_error(sess, instance, message)
                    failed.append(instance.uuid)
        return failed
