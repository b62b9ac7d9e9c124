"""The volume agent as it runs in production: ``cirrus-volume-agent --config-file X`` (file backend,
real ``qemu-img`` and ``qemu-nbd``) driven over the private RabbitMQ broker.

The ``volume`` topic (served by cirrus-volume-rpc in a deployment) is served here by
:class:`VolumeService`, an endpoint of the test that records every report and answers
``get_host_volumes`` from a dictionary. Each test module uses its own exchange, so nothing is
shared with other tests on the broker. Data goes through the exports with ``qemu-io`` and
``qemu-img`` over ``nbd://127.0.0.1:PORT/EXPORT``.

Clean-up (also on failure): the agent is stopped by the PID of the process the fixture started,
every ``qemu-nbd`` recorded in the state directory is stopped through
:class:`agents.volume.nbd.NbdExports` (which checks the command line before signalling), and the
temporary directory is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.volume import nbd
from control.common import rpc
from control.common.context import RequestContext
from tests.fixtures.rabbitmq import RabbitMQBroker

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

GiB = 1024**3
AGENT = Path(sys.executable).with_name("cirrus-volume-agent")


def _unavailable() -> str | None:
    for tool in ("qemu-img", "qemu-nbd", "qemu-io"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (package qemu-utils)"
    if not AGENT.exists():
        return f"{AGENT} is not installed (pip install -e .)"
    return None


if (reason := _unavailable()) is not None:
    pytest.skip(reason, allow_module_level=True)


def ctxt() -> RequestContext:
    return RequestContext(roles=["admin"])


def new_id() -> str:
    return str(uuid.uuid4())


class VolumeService:
    """The ``volume`` topic's endpoint, recording what the agent reports."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.host_volumes: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()

    def _record(self, method: str, **kwargs: Any) -> None:
        with self._cond:
            self.events.append((method, kwargs))
            self._cond.notify_all()

    def report_state(self, ctxt: RequestContext, **kwargs: Any) -> dict[str, Any]:
        self._record("report_state", **kwargs)
        return {}

    def volume_update(self, ctxt: RequestContext, **kwargs: Any) -> bool:
        self._record("volume_update", **kwargs)
        return True

    def volume_deleted(self, ctxt: RequestContext, **kwargs: Any) -> bool:
        self._record("volume_deleted", **kwargs)
        return True

    def snapshot_update(self, ctxt: RequestContext, **kwargs: Any) -> bool:
        self._record("snapshot_update", **kwargs)
        return True

    def snapshot_deleted(self, ctxt: RequestContext, **kwargs: Any) -> bool:
        self._record("snapshot_deleted", **kwargs)
        return True

    def get_host_volumes(self, ctxt: RequestContext, host: str) -> dict[str, dict[str, Any]]:
        self._record("get_host_volumes", host=host)
        return dict(self.host_volumes)

    def wait(
        self, method: str, match: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        """The first event of ``method`` whose arguments ``match``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for name, kwargs in self.events:
                    if name == method and match(kwargs):
                        return kwargs
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {method} matching within {timeout}s: {self.events}")
                self._cond.wait(remaining)

    def wait_volume(self, volume_id: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait("volume_update", lambda k: k["volume_id"] == volume_id, timeout)

    def count(self, method: str) -> int:
        with self._cond:
            return sum(1 for name, _ in self.events if name == method)


class AgentProcess:
    """One ``cirrus-volume-agent`` subprocess and its files."""

    def __init__(self, root: Path, url: str, exchange: str) -> None:
        self.root = root
        self.host = f"vol-{uuid.uuid4().hex[:8]}"
        self.volumes_dir = root / "volumes"
        self.state_dir = root / "exports"
        base = random.randrange(20000, 40000, 100)
        self.port_min, self.port_max = base, base + 49
        self.config = root / "volume-agent.conf"
        self.config.write_text(
            "[DEFAULT]\n"
            "log_level = DEBUG\n"
            f"host = {self.host}\n"
            "[rpc]\n"
            f"transport_url = {url}\n"
            f"exchange = {exchange}\n"
            "[volume]\n"
            "backend = file\n"
            "backend_name = file\n"
            f"volumes_dir = {self.volumes_dir}\n"
            "volume_format = raw\n"
            "export_address = 127.0.0.1\n"
            f"export_port_min = {self.port_min}\n"
            f"export_port_max = {self.port_max}\n"
            "report_interval = 1\n"
            f"state_dir = {self.state_dir}\n"
        )
        self.log = root / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(AGENT), "--config-file", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop()
        nbd.stop_all(self.state_dir)


@pytest.fixture(scope="module")
def broker_url(rabbitmq: RabbitMQBroker) -> str:
    return rabbitmq.url


@pytest.fixture(scope="module")
def env(broker_url: str) -> Iterator[tuple[AgentProcess, VolumeService, rpc.RPCClient]]:
    exchange = f"cirrus-voltest-{uuid.uuid4().hex[:8]}"
    transport = rpc.Transport(broker_url, exchange=exchange, connect_timeout=5.0)
    root = Path(tempfile.mkdtemp(prefix="cirrus-volume-agent-"))
    service = VolumeService()
    server = rpc.RPCServer(transport, "volume", [service], executor_threads=4)
    agent = AgentProcess(root, broker_url, exchange)
    try:
        server.start()
        agent.start()
        client = rpc.RPCClient(transport, f"volume.{agent.host}", timeout=60.0)
        service.wait("report_state", lambda k: k["host"] == agent.host, timeout=60)
        yield agent, service, client
    finally:
        agent.cleanup()
        server.stop()
        server.wait()
        transport.close()
        if os.environ.get("CIRRUS_KEEP_TMP"):
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


Env = tuple[AgentProcess, VolumeService, rpc.RPCClient]


def nbd_url(info: dict[str, Any]) -> str:
    assert info["driver_volume_type"] == "nbd"
    data = info["data"]
    return f"nbd://{data['host']}:{data['port']}/{data['export_name']}"


def qemu_io(url: str, command: str) -> str:
    proc = subprocess.run(
        ["qemu-io", "-f", "raw", "-c", command, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "fail" not in out.lower(), f"qemu-io {command}: {out}"
    return out


def nbd_size(url: str) -> int:
    out = subprocess.run(
        ["qemu-img", "info", "-f", "raw", "--output=json", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return int(json.loads(out)["virtual-size"])


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def create(env: Env, size: int = 1, source: dict[str, Any] | None = None) -> str:
    _agent, service, client = env
    volume_id = new_id()
    client.cast(
        ctxt(),
        "create_volume",
        volume={"id": volume_id, "size": size},
        source=source or {"type": "blank"},
    )
    update = service.wait_volume(volume_id)
    assert update["updates"]["status"] == "available", update
    return volume_id


def connect(env: Env, volume_id: str, attachment_id: str | None = None) -> dict[str, Any]:
    _agent, _service, client = env
    info: dict[str, Any] = client.call(
        ctxt(),
        "initialize_connection",
        volume_id=volume_id,
        attachment_id=attachment_id or new_id(),
        connector={"host": "compute1"},
    )
    return info


def disconnect(env: Env, info: dict[str, Any]) -> None:
    _agent, _service, client = env
    data = info["data"]
    client.call(
        ctxt(),
        "terminate_connection",
        volume_id=data["volume_id"],
        attachment_id=data["attachment_id"],
    )


def test_reports_state_with_capacity(env: Env) -> None:
    agent, service, _client = env
    report = service.wait("report_state", lambda k: k["host"] == agent.host)
    assert report["binary"] == "cinder-volume"
    assert report["availability_zone"] == "nova"
    caps = report["capabilities"]
    assert caps["backend_name"] == "file"
    assert caps["volume_format"] == "raw"
    assert caps["total_capacity_gb"] > 0
    assert 0 < caps["free_capacity_gb"] <= caps["total_capacity_gb"]
    assert isinstance(caps["provisioned_capacity_gb"], float)
    service.wait("get_host_volumes", lambda k: k["host"] == agent.host)


def test_write_stop_reexport_read(env: Env) -> None:
    agent, _service, _client = env
    volume_id = create(env)
    path = agent.volumes_dir / f"volume-{volume_id}"
    assert path.stat().st_size == GiB
    assert path.stat().st_blocks * 512 < GiB  # sparse
    info = connect(env, volume_id)
    assert info["data"]["host"] == "127.0.0.1"
    assert agent.port_min <= info["data"]["port"] <= agent.port_max
    assert info["data"]["volume_id"] == volume_id
    url = nbd_url(info)
    assert nbd_size(url) == GiB
    qemu_io(url, "write -P 0x5a 0 1M")
    qemu_io(url, "write -P 0xc3 512M 64k")
    disconnect(env, info)
    assert not port_open(info["data"]["port"])
    disconnect(env, info)  # idempotent
    again = connect(env, volume_id)
    url = nbd_url(again)
    qemu_io(url, "read -P 0x5a 0 1M")
    qemu_io(url, "read -P 0xc3 512M 64k")
    qemu_io(url, "read -P 0 1M 1M")
    disconnect(env, again)


def test_snapshot_clone_and_extend(env: Env) -> None:
    agent, service, client = env
    volume_id = create(env)
    info = connect(env, volume_id)
    qemu_io(nbd_url(info), "write -P 0x77 4M 2M")
    snapshot_id = new_id()
    # attached (exported) while the snapshot is taken: convert -U copies it
    client.cast(
        ctxt(),
        "create_snapshot",
        snapshot={"id": snapshot_id, "volume_id": volume_id, "size": 1},
        force=True,
    )
    update = service.wait("snapshot_update", lambda k: k["snapshot_id"] == snapshot_id)
    assert update["updates"] == {"status": "available"}
    assert (agent.volumes_dir / f"snapshot-{snapshot_id}").is_file()
    qemu_io(nbd_url(info), "write -P 0x11 4M 2M")  # after the snapshot: not in it
    disconnect(env, info)

    from_snapshot = create(env, 2, {"type": "snapshot", "snapshot_id": snapshot_id})
    clone = create(env, 1, {"type": "volume", "volume_id": volume_id})
    snap_info = connect(env, from_snapshot)
    assert nbd_size(nbd_url(snap_info)) == 2 * GiB
    qemu_io(nbd_url(snap_info), "read -P 0x77 4M 2M")
    disconnect(env, snap_info)
    clone_info = connect(env, clone)
    qemu_io(nbd_url(clone_info), "read -P 0x11 4M 2M")
    disconnect(env, clone_info)

    client.cast(ctxt(), "extend_volume", volume_id=clone, new_size=3)
    update = service.wait(
        "volume_update",
        lambda k: k["volume_id"] == clone and k["updates"].get("size") == 3,
    )
    assert update["updates"] == {"status": "available", "size": 3}
    grown = connect(env, clone)
    assert nbd_size(nbd_url(grown)) == 3 * GiB
    qemu_io(nbd_url(grown), "read -P 0x11 4M 2M")
    disconnect(env, grown)

    client.cast(ctxt(), "delete_snapshot", snapshot_id=snapshot_id)
    service.wait("snapshot_deleted", lambda k: k["snapshot_id"] == snapshot_id)
    assert not (agent.volumes_dir / f"snapshot-{snapshot_id}").exists()


def test_create_errors_are_reported(env: Env) -> None:
    _agent, service, client = env
    volume_id = new_id()
    client.cast(
        ctxt(),
        "create_volume",
        volume={"id": volume_id, "size": 1},
        source={"type": "snapshot", "snapshot_id": new_id()},
    )
    update = service.wait_volume(volume_id)
    assert update["updates"] == {"status": "error"}
    assert "snapshot" in update["message"]
    with pytest.raises(rpc.RemoteError, match="does not exist"):
        connect(env, new_id())


def test_delete_removes_file_and_export(env: Env) -> None:
    agent, service, client = env
    volume_id = create(env)
    info = connect(env, volume_id)
    pid = json.loads((agent.state_dir / f"{info['data']['attachment_id']}.json").read_text())["pid"]
    client.cast(ctxt(), "delete_volume", volume_id=volume_id)
    service.wait("volume_deleted", lambda k: k["volume_id"] == volume_id)
    assert not (agent.volumes_dir / f"volume-{volume_id}").exists()
    assert not port_open(info["data"]["port"])
    assert nbd.process_cmdline(pid) is None
    assert not (agent.state_dir / f"{info['data']['attachment_id']}.json").exists()
    before = service.count("volume_deleted")
    client.cast(ctxt(), "delete_volume", volume_id=volume_id)  # gone already: still deleted
    service.wait("volume_deleted", lambda k: service.count("volume_deleted") > before)


def test_two_attachments_get_two_exports(env: Env) -> None:
    volume_id = create(env)
    first = connect(env, volume_id)
    second = connect(env, volume_id)
    assert first["data"]["port"] != second["data"]["port"]
    assert connect(env, volume_id, first["data"]["attachment_id"]) == first  # idempotent
    qemu_io(nbd_url(first), "write -P 0x42 0 64k")
    qemu_io(nbd_url(second), "read -P 0x42 0 64k")
    disconnect(env, first)
    assert not port_open(first["data"]["port"])
    qemu_io(nbd_url(second), "read -P 0x42 0 64k")
    disconnect(env, second)


def test_image_source(env: Env) -> None:
    agent, service, client = env
    image = agent.root / "image.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x99 1M 1M", str(image)],
        check=True,
        capture_output=True,
    )
    data = image.read_bytes()
    image_id = new_id()
    seen_tokens: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen_tokens.append(self.headers.get("X-Auth-Token"))
            if self.path == f"/v2/images/{image_id}":
                body = json.dumps(
                    {
                        "id": image_id,
                        "name": "tiny",
                        "disk_format": "qcow2",
                        "container_format": "bare",
                        "size": len(data),
                        "checksum": hashlib.md5(data, usedforsecurity=False).hexdigest(),
                        "os_hash_algo": "sha512",
                        "os_hash_value": hashlib.sha512(data).hexdigest(),
                    }
                ).encode()
            elif self.path == f"/v2/images/{image_id}/file":
                body = data
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        source = {
            "type": "image",
            "image_id": image_id,
            "image_api_url": url,
            "token": "secret-token",
            "disk_format": "qcow2",
        }
        volume_id = new_id()
        client.cast(ctxt(), "create_volume", volume={"id": volume_id, "size": 1}, source=source)
        update = service.wait_volume(volume_id)
        assert update["updates"]["status"] == "available", update
        assert update["updates"]["bootable"] is True
        meta = update["updates"]["volume_image_metadata"]
        assert meta["image_id"] == image_id
        assert meta["image_name"] == "tiny"
        assert meta["disk_format"] == "qcow2"
        assert seen_tokens and set(seen_tokens) == {"secret-token"}
        info = connect(env, volume_id)
        assert nbd_size(nbd_url(info)) == GiB
        qemu_io(nbd_url(info), "read -P 0x99 1M 1M")
        disconnect(env, info)
        assert not list(agent.volumes_dir.glob(".image-*"))  # the download is removed

        bad = new_id()
        client.cast(
            ctxt(),
            "create_volume",
            volume={"id": bad, "size": 1},
            source={**source, "checksum": "0" * 32},
        )
        update = service.wait_volume(bad)
        assert update["updates"] == {"status": "error"}
        assert "checksum" in update["message"]
        assert not (agent.volumes_dir / f"volume-{bad}").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_restart_keeps_exports_and_reconciles(env: Env) -> None:
    agent, service, client = env
    volume_id = create(env)
    attachment_id = new_id()
    info = connect(env, volume_id, attachment_id)
    qemu_io(nbd_url(info), "write -P 0xee 0 1M")
    dead = connect(env, volume_id)
    dead_record = agent.state_dir / f"{dead['data']['attachment_id']}.json"

    # Volumes the service wants reconciled: one "creating" whose file exists (its outcome was
    # lost) and one "deleting".
    created = new_id()
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "raw",
            str(agent.volumes_dir / f"volume-{created}"),
            "1G",
        ],
        check=True,
    )
    deleting = create(env)
    service.host_volumes = {
        volume_id: {"status": "in-use", "size": 1},
        created: {"status": "creating", "size": 1},
        deleting: {"status": "deleting", "size": 1},
    }

    agent.stop()
    # the export outlives the agent
    qemu_io(nbd_url(info), "read -P 0xee 0 1M")
    # one export dies while the agent is away: its record goes at the next start
    pid = json.loads(dead_record.read_text())["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while nbd.process_cmdline(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)

    reports = service.count("get_host_volumes")
    agent.start()
    service.wait("get_host_volumes", lambda k: service.count("get_host_volumes") > reports)
    update = service.wait_volume(created)
    assert update["updates"] == {"status": "available"}
    service.wait("volume_deleted", lambda k: k["volume_id"] == deleting)
    assert not (agent.volumes_dir / f"volume-{deleting}").exists()
    assert not dead_record.exists()

    # the same attachment finds the same export, still serving the data
    assert connect(env, volume_id, attachment_id) == info
    qemu_io(nbd_url(info), "read -P 0xee 0 1M")
    disconnect(env, info)
    assert not port_open(info["data"]["port"])
