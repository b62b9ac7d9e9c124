"""The volume agent's manager over the fake driver and a recording stand-in for the ``volume``
topic: every cast's outcome, idempotency, reconciliation and state reports. No broker, no files."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from agents.volume.driver import DriverError, VolumeNotFound
from agents.volume.fake import FakeDriver, FakeImageFetcher
from agents.volume.manager import VolumeManager
from control.common.context import RequestContext

CTXT = RequestContext()


class RecordingAPI:
    """The VolumeRPCAPI methods the manager uses, recording calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.host_volumes: dict[str, dict[str, Any]] = {}
        self.fail_reports = 0

    def report_state(
        self,
        ctxt: RequestContext,
        host: str,
        binary: str,
        availability_zone: str,
        capabilities: dict[str, Any],
    ) -> dict[str, Any]:
        self.calls.append(("report_state", (host, binary, availability_zone, capabilities)))
        return {}

    def volume_update(
        self,
        ctxt: RequestContext,
        volume_id: str,
        updates: dict[str, Any],
        message: str | None = None,
    ) -> bool:
        if self.fail_reports:
            self.fail_reports -= 1
            raise RuntimeError("broker away")
        self.calls.append(("volume_update", (volume_id, updates, message)))
        return True

    def volume_deleted(self, ctxt: RequestContext, volume_id: str) -> bool:
        self.calls.append(("volume_deleted", (volume_id,)))
        return True

    def snapshot_update(
        self,
        ctxt: RequestContext,
        snapshot_id: str,
        updates: dict[str, Any],
        message: str | None = None,
    ) -> bool:
        self.calls.append(("snapshot_update", (snapshot_id, updates, message)))
        return True

    def snapshot_deleted(self, ctxt: RequestContext, snapshot_id: str) -> bool:
        self.calls.append(("snapshot_deleted", (snapshot_id,)))
        return True

    def get_host_volumes(self, ctxt: RequestContext, host: str) -> dict[str, dict[str, Any]]:
        self.calls.append(("get_host_volumes", (host,)))
        return dict(self.host_volumes)

    def last(self, method: str) -> tuple[Any, ...]:
        for name, args in reversed(self.calls):
            if name == method:
                return args
        raise AssertionError(f"no {method} in {self.calls}")


@pytest.fixture
def parts() -> tuple[VolumeManager, FakeDriver, RecordingAPI, FakeImageFetcher]:
    driver = FakeDriver(total_gb=100)
    api = RecordingAPI()
    images = FakeImageFetcher()
    manager = VolumeManager("store1", driver, api, images, retry_delay=0)
    return manager, driver, api, images


Parts = tuple[VolumeManager, FakeDriver, RecordingAPI, FakeImageFetcher]


def test_create_blank_reports_available_and_is_idempotent(parts: Parts) -> None:
    manager, driver, api, _ = parts
    manager.create_volume(CTXT, {"id": "v1", "size": 2}, {"type": "blank"})
    assert api.last("volume_update") == ("v1", {"status": "available", "bootable": False}, None)
    assert driver.volumes["v1"].size_gb == 2
    manager.create_volume(CTXT, {"id": "v1", "size": 2}, {"type": "blank"})  # redelivered
    assert [c for c in api.calls if c[0] == "volume_update"][-1][1][1]["status"] == "available"
    assert driver.calls.count(("create_volume", "v1")) == 1


def test_create_from_snapshot_and_volume(parts: Parts) -> None:
    manager, driver, api, _ = parts
    manager.create_volume(CTXT, {"id": "v1", "size": 1}, None)
    driver.volumes["v1"].data = b"hello"
    manager.create_snapshot(CTXT, {"id": "s1", "volume_id": "v1", "size": 1}, False)
    assert api.last("snapshot_update") == ("s1", {"status": "available"}, None)
    manager.create_volume(CTXT, {"id": "v2", "size": 3}, {"type": "snapshot", "snapshot_id": "s1"})
    manager.create_volume(CTXT, {"id": "v3", "size": 1}, {"type": "volume", "volume_id": "v1"})
    assert driver.volumes["v2"].data == b"hello" and driver.volumes["v2"].size_gb == 3
    assert driver.volumes["v3"].data == b"hello"
    # bootable is the API's to copy from the source: not reported for clones
    assert api.last("volume_update") == ("v3", {"status": "available"}, None)


def test_create_from_image_reports_metadata(parts: Parts) -> None:
    manager, driver, api, images = parts
    images.images["img1"] = {"id": "img1", "name": "debian", "disk_format": "qcow2", "size": 42}
    source = {
        "type": "image",
        "image_id": "img1",
        "image_api_url": "http://image",
        "token": "tok",
        "disk_format": "qcow2",
    }
    manager.create_volume(CTXT, {"id": "v1", "size": 1}, source)
    volume_id, updates, message = api.last("volume_update")
    assert (volume_id, message) == ("v1", None)
    assert updates["status"] == "available" and updates["bootable"] is True
    assert updates["volume_image_metadata"] == {
        "image_id": "img1",
        "image_name": "debian",
        "disk_format": "qcow2",
        "size": "42",
    }
    assert driver.volumes["v1"].source == "image:qcow2"
    assert images.fetched == ["img1"]


def test_create_failures_report_error_with_message(parts: Parts) -> None:
    manager, driver, api, images = parts
    manager.create_volume(CTXT, {"id": "v1", "size": 1}, {"type": "snapshot", "snapshot_id": "x"})
    assert api.last("volume_update") == ("v1", {"status": "error"}, "snapshot x does not exist")
    driver.fail["create_volume"] = "disk on fire"
    manager.create_volume(CTXT, {"id": "v2", "size": 1}, {"type": "blank"})
    assert api.last("volume_update") == ("v2", {"status": "error"}, "disk on fire")
    images.fail = "image download failed"
    manager.create_volume(CTXT, {"id": "v3", "size": 1}, {"type": "image", "image_id": "i"})
    assert api.last("volume_update")[2] == "image download failed"
    manager.create_volume(CTXT, {"id": "v4", "size": 1}, {"type": "tape"})
    assert "unknown volume source type" in api.last("volume_update")[2]
    manager.create_volume(CTXT, {"id": "v5", "size": 0}, None)
    assert "invalid size" in api.last("volume_update")[2]
    assert not driver.volumes


def test_invalid_ids_never_reach_the_driver(parts: Parts) -> None:
    manager, driver, _api, _ = parts
    with pytest.raises(DriverError, match="invalid volume id"):
        manager.create_volume(CTXT, {"id": "../etc", "size": 1}, None)
    with pytest.raises(DriverError, match="invalid attachment id"):
        manager.initialize_connection(CTXT, "v1", "a/b", {})
    assert not driver.calls


def test_delete_stops_exports_and_is_idempotent(parts: Parts) -> None:
    manager, driver, api, _ = parts
    manager.create_volume(CTXT, {"id": "v1", "size": 1}, None)
    manager.initialize_connection(CTXT, "v1", "a1", {"host": "c1"})
    manager.delete_volume(CTXT, "v1")
    assert api.last("volume_deleted") == ("v1",)
    assert not driver.exports and not driver.volumes
    manager.delete_volume(CTXT, "v1")  # gone: deleted again
    assert [c for c in api.calls if c[0] == "volume_deleted"] == [("volume_deleted", ("v1",))] * 2
    manager.create_volume(CTXT, {"id": "v2", "size": 1}, None)
    driver.fail["delete_volume"] = "busy"
    manager.delete_volume(CTXT, "v2")
    assert api.last("volume_update") == ("v2", {"status": "error_deleting"}, "busy")


def test_extend_reports_new_size_or_keeps_available(parts: Parts) -> None:
    manager, driver, api, _ = parts
    manager.create_volume(CTXT, {"id": "v1", "size": 1}, None)
    manager.extend_volume(CTXT, "v1", 5)
    assert api.last("volume_update") == ("v1", {"status": "available", "size": 5}, None)
    assert driver.volumes["v1"].size_gb == 5
    driver.fail["extend_volume"] = "no space"
    manager.extend_volume(CTXT, "v1", 9)
    assert api.last("volume_update") == (
        "v1",
        {"status": "available"},
        "extend to 9 GiB failed: no space",
    )
    assert driver.volumes["v1"].size_gb == 5


def test_snapshot_delete_and_errors(parts: Parts) -> None:
    manager, driver, api, _ = parts
    manager.create_snapshot(CTXT, {"id": "s1", "volume_id": "nope", "size": 1}, False)
    assert api.last("snapshot_update") == ("s1", {"status": "error"}, "volume nope does not exist")
    manager.create_volume(CTXT, {"id": "v1", "size": 1}, None)
    manager.create_snapshot(CTXT, {"id": "s1", "volume_id": "v1", "size": 1}, False)
    manager.delete_snapshot(CTXT, "s1")
    manager.delete_snapshot(CTXT, "s1")
    assert api.calls[-2:] == [("snapshot_deleted", ("s1",))] * 2
    manager.create_snapshot(CTXT, {"id": "s2", "volume_id": "v1", "size": 1}, False)
    driver.fail["delete_snapshot"] = "locked"
    manager.delete_snapshot(CTXT, "s2")
    assert api.last("snapshot_update") == ("s2", {"status": "error_deleting"}, "locked")


def test_connections_are_per_attachment_and_idempotent(parts: Parts) -> None:
    manager, driver, _api, _ = parts
    manager.create_volume(CTXT, {"id": "v1", "size": 1}, None)
    first = manager.initialize_connection(CTXT, "v1", "a1", {"host": "c1"})
    assert first == {
        "driver_volume_type": "nbd",
        "data": {
            "host": "127.0.0.1",
            "port": 10809,
            "export_name": "volume-v1",
            "volume_id": "v1",
            "attachment_id": "a1",
        },
    }
    assert manager.initialize_connection(CTXT, "v1", "a1", {"host": "c1"}) == first
    second = manager.initialize_connection(CTXT, "v1", "a2", {"host": "c2"})
    assert second["data"]["port"] == 10810
    assert manager.terminate_connection(CTXT, "v1", "a1") is None
    assert manager.terminate_connection(CTXT, "v1", "a1") is None
    assert list(driver.exports) == ["a2"]
    with pytest.raises(VolumeNotFound):
        manager.initialize_connection(CTXT, "missing", "a3", {})


def test_capabilities_and_report_state(parts: Parts) -> None:
    manager, _driver, api, _ = parts
    manager.create_volume(CTXT, {"id": "v1", "size": 10}, None)
    manager.create_snapshot(CTXT, {"id": "s1", "volume_id": "v1", "size": 10}, False)
    manager.report_state()
    host, binary, zone, caps = api.last("report_state")
    assert (host, binary, zone) == ("store1", "cinder-volume", "nova")
    assert caps == {
        "backend_name": "file",
        "volume_format": "raw",
        "total_capacity_gb": 100.0,
        "free_capacity_gb": 90.0,
        "provisioned_capacity_gb": 20.0,
    }
    assert all(isinstance(v, float) for k, v in caps.items() if k.endswith("_gb"))


def test_reconcile(parts: Parts) -> None:
    manager, driver, api, _ = parts
    for volume_id in ("done", "gone", "big", "fine", "stray"):
        driver.create_volume(volume_id, 1)
    driver.extend_volume("big", 4)
    api.host_volumes = {
        "done": {"status": "creating", "size": 1},
        "pending": {"status": "creating", "size": 1},
        "gone": {"status": "deleting", "size": 1},
        "big": {"status": "extending", "size": 1},
        "fine": {"status": "in-use", "size": 1},
        "lost": {"status": "available", "size": 1},
    }
    result = manager.reconcile()
    assert result["done"] == "available"
    assert result["pending"].startswith("creating")
    assert result["gone"] == "deleted"
    assert result["big"] == "available"
    assert result["fine"] == "unchanged"
    assert result["lost"] == "missing"
    assert result["stray"] == "unknown to the volume service"
    assert "gone" not in driver.volumes and "stray" in driver.volumes  # unknown data is kept
    assert ("volume_update", ("done", {"status": "available"}, None)) in api.calls
    assert ("volume_update", ("big", {"status": "available", "size": 4}, None)) in api.calls
    assert ("volume_deleted", ("gone",)) in api.calls


def test_outcome_reports_are_retried(parts: Parts) -> None:
    manager, _driver, api, _ = parts
    api.fail_reports = 2
    manager.create_volume(CTXT, {"id": "v1", "size": 1}, None)
    assert api.last("volume_update")[1]["status"] == "available"
    api.fail_reports = 5
    manager.create_volume(CTXT, {"id": "v2", "size": 1}, None)  # given up, logged: no raise
    assert api.last("volume_update")[0] == "v1"


def test_operations_on_one_volume_are_serialised(parts: Parts) -> None:
    manager, driver, api, _ = parts
    gate = threading.Event()
    driver.gate = gate
    creating = threading.Thread(
        target=manager.create_volume, args=(CTXT, {"id": "v1", "size": 1}, None)
    )
    creating.start()
    connected: list[dict[str, Any]] = []
    connecting = threading.Thread(
        target=lambda: connected.append(manager.initialize_connection(CTXT, "v1", "a1", {}))
    )
    connecting.start()
    connecting.join(0.2)
    assert connecting.is_alive()  # waits for the create of the same volume
    gate.set()
    creating.join(5)
    connecting.join(5)
    assert connected and connected[0]["data"]["volume_id"] == "v1"
    assert api.last("volume_update")[1]["status"] == "available"


def test_loop_reconciles_then_reports(parts: Parts) -> None:
    manager, _driver, api, _ = parts
    manager.report_interval = 0.05
    manager.start()
    try:
        assert manager.reconciled.wait(5)
        deadline = time.monotonic() + 5
        while not any(n == "report_state" for n, _ in api.calls) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        manager.stop()
    names = [name for name, _ in api.calls]
    assert names[0] == "report_state" and "get_host_volumes" in names
    assert not manager._locks  # no lock kept once the work is done
