"""The compute agent's heartbeat keeps the host `up` whatever one guest does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.compute.driver import DriverError, PowerState
from agents.compute.fake import FakeDriver
from agents.compute.imagecache import ImageCache
from agents.compute.manager import ComputeManager

GOOD = "11111111-1111-4111-8111-111111111111"
VANISHING = "22222222-2222-4222-8222-222222222222"


class RecordingConductor:
    def __init__(self) -> None:
        self.heartbeats: list[dict[str, Any]] = []

    def service_heartbeat(self, ctxt: Any, host: str, binary: str, **kwargs: Any) -> dict[str, Any]:
        self.heartbeats.append({"host": host, "binary": binary, **kwargs})
        return {"state": "up"}

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the heartbeat must not call conductor.{name}")


class GuestBeingRemoved(FakeDriver):
    """A driver whose second guest fails while it is being removed, as libvirt does when a
    domain's metadata is gone before the domain."""

    def list_instances(self) -> list[str]:
        return [GOOD, VANISHING]

    def get_power_state(self, instance_uuid: str) -> PowerState:
        if instance_uuid == VANISHING:
            raise DriverError(f"domain instance-{VANISHING} exists but was not created by Cirrus")
        return PowerState.RUNNING


def test_a_guest_that_fails_to_answer_is_left_out_and_the_host_still_reports(
    tmp_path: Path,
) -> None:
    driver = GuestBeingRemoved()
    driver.init_host("cmp1")
    conductor = RecordingConductor()
    manager = ComputeManager(
        "cmp1",
        driver,
        conductor,
        ImageCache(tmp_path / "cache", lambda token: "http://image.invalid"),  # type: ignore[arg-type]
    )

    manager.heartbeat()

    assert len(conductor.heartbeats) == 1
    beat = conductor.heartbeats[0]
    assert beat["host"] == "cmp1" and beat["binary"] == "nova-compute"
    assert beat["power_states"] == {GOOD: int(PowerState.RUNNING)}
