"""The file backend with the real ``qemu-img`` and ``qemu-nbd`` (no broker): files, formats,
image checks, capacity, and the export bookkeeping (ports, adoption, PID checks).

Every ``qemu-nbd`` started here is stopped through :class:`NbdExports` by the fixture, also when
a test fails; files live in pytest's ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.volume import nbd
from agents.volume.driver import DriverError, GiB, SnapshotNotFound, VolumeNotFound
from agents.volume.file import FileDriver

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-img") is None or shutil.which("qemu-nbd") is None,
    reason="qemu-utils is not installed",
)


def free_range(width: int = 20) -> tuple[int, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        base = int(sock.getsockname()[1])
    base = min(base, 65000)
    return base, base + width


@pytest.fixture
def exports(tmp_path: Path) -> Iterator[nbd.NbdExports]:
    low, high = free_range()
    exp = nbd.NbdExports(tmp_path / "state", "127.0.0.1", low, high)
    try:
        yield exp
    finally:
        for export in exp.live():
            exp.stop(export.attachment_id)


@pytest.fixture(params=["raw", "qcow2"])
def driver(request: pytest.FixtureRequest, tmp_path: Path, exports: nbd.NbdExports) -> FileDriver:
    drv = FileDriver(tmp_path / "volumes", request.param, exports)
    drv.start()
    return drv


def info(path: Path, fmt: str) -> dict[str, object]:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "-f", fmt, "--output=json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def qemu_io(target: str, fmt: str, command: str) -> None:
    proc = subprocess.run(
        ["qemu-io", "-f", fmt, "-c", command, target], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and "fail" not in proc.stdout.lower(), proc.stdout + proc.stderr


def test_blank_volume_is_thin_in_the_configured_format(driver: FileDriver) -> None:
    driver.create_volume("v1", 2)
    path = driver.volume_path("v1")
    assert info(path, driver.volume_format)["virtual-size"] == 2 * GiB
    assert path.stat().st_blocks * 512 < 16 * 1024 * 1024
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    driver.create_volume("v1", 2)  # idempotent
    assert driver.volume_size("v1") == 2
    assert driver.list_volumes() == ["v1"]
    assert driver.delete_volume("v1") is True
    assert driver.delete_volume("v1") is False
    with pytest.raises(VolumeNotFound):
        driver.volume_size("v1")


def test_interrupted_create_leaves_no_volume(driver: FileDriver) -> None:
    tmp = driver.dir / ".tmp-volume-v1"
    tmp.write_bytes(b"half")
    assert not driver.volume_exists("v1")
    driver.create_volume("v1", 1)
    assert not tmp.exists() and driver.volume_exists("v1")


def test_snapshot_clone_extend_keep_data(driver: FileDriver) -> None:
    fmt = driver.volume_format
    driver.create_volume("v1", 1)
    qemu_io(str(driver.volume_path("v1")), fmt, "write -P 0x61 0 64k")
    driver.create_snapshot("s1", "v1")
    qemu_io(str(driver.volume_path("v1")), fmt, "write -P 0x62 0 64k")
    driver.create_volume_from_snapshot("v2", 2, "s1")
    driver.create_volume_from_volume("v3", 1, "v1")
    assert driver.volume_size("v2") == 2
    qemu_io(str(driver.volume_path("v2")), fmt, "read -P 0x61 0 64k")
    qemu_io(str(driver.volume_path("v3")), fmt, "read -P 0x62 0 64k")
    driver.extend_volume("v3", 3)
    assert driver.volume_size("v3") == 3
    qemu_io(str(driver.volume_path("v3")), fmt, "read -P 0x62 0 64k")
    with pytest.raises(DriverError, match="larger than the 1 GiB volume"):
        driver.create_volume_from_volume("v4", 1, "v3")
    with pytest.raises(SnapshotNotFound):
        driver.create_volume_from_snapshot("v5", 1, "nope")
    with pytest.raises(VolumeNotFound):
        driver.create_snapshot("s2", "nope")
    assert driver.delete_snapshot("s1") and not driver.delete_snapshot("s1")
    cap = driver.capacity()
    assert cap.provisioned_gb == 6.0  # v1 1 + v2 2 + v3 3
    assert 0 < cap.free_gb <= cap.total_gb


def test_image_conversion_and_checks(driver: FileDriver, tmp_path: Path) -> None:
    image = tmp_path / "img.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "32M"], check=True)
    qemu_io(str(image), "qcow2", "write -P 0x33 1M 64k")
    driver.create_volume_from_image("v1", 1, image, "qcow2")
    assert driver.volume_size("v1") == 1
    qemu_io(str(driver.volume_path("v1")), driver.volume_format, "read -P 0x33 1M 64k")

    big = tmp_path / "big.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(big), "3G"], check=True)
    with pytest.raises(DriverError, match="larger than the 2 GiB volume"):
        driver.create_volume_from_image("v2", 2, big, "qcow2")

    backed = tmp_path / "backed.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image), str(backed)],
        check=True,
    )
    with pytest.raises(DriverError, match="backing file"):
        driver.create_volume_from_image("v3", 1, backed, "qcow2")
    with pytest.raises(DriverError, match="cannot be written"):
        driver.create_volume_from_image("v4", 1, image, "aki")
    # a qcow2 file announced as raw is copied byte for byte, never interpreted
    driver.create_volume_from_image("v5", 1, image, "raw")
    assert not driver.volume_exists("v2") and not driver.volume_exists("v3")
    assert not list(driver.dir.glob(".tmp-*"))


def test_ids_are_checked_before_any_path_is_built(driver: FileDriver) -> None:
    for bad in ("../x", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(DriverError, match="invalid"):
            driver.create_volume(bad, 1)
    with pytest.raises(DriverError, match="invalid size"):
        driver.create_volume("v1", 0)


def test_exports_serve_and_stop(driver: FileDriver) -> None:
    driver.create_volume("v1", 1)
    first = driver.start_export("v1", "a1")
    assert driver.start_export("v1", "a1") == first
    if driver.volume_format == "qcow2":
        with pytest.raises(DriverError, match="one writer at a time"):
            driver.start_export("v1", "a2")
        driver.create_volume_from_volume("v9", 1, "v1")
        second = driver.start_export("v9", "a2")
    else:
        second = driver.start_export("v1", "a2")
    assert first.port != second.port
    url = f"nbd://127.0.0.1:{first.port}/{first.export_name}"
    qemu_io(url, "raw", "write -P 0x44 0 64k")
    if driver.volume_format == "raw":
        qemu_io(f"nbd://127.0.0.1:{second.port}/{second.export_name}", "raw", "read -P 0x44 0 64k")
    with pytest.raises(DriverError, match="exported"):
        driver.extend_volume("v1", 2)
    with pytest.raises(DriverError, match="already exports volume v1"):
        driver.create_volume("v2", 1) or driver.start_export("v2", "a1")
    assert {e.attachment_id for e in driver.list_exports()} == {"a1", "a2"}
    assert driver.stop_volume_exports("v1") == (2 if driver.volume_format == "raw" else 1)
    driver.stop_export("a2")
    assert driver.list_exports() == []
    assert driver.stop_export("a1") is False
    assert nbd.process_exited(first.pid or 0)
    with pytest.raises(VolumeNotFound):
        driver.start_export("nope", "a3")


def test_port_in_use_is_skipped(tmp_path: Path) -> None:
    low, high = free_range(5)
    volume = tmp_path / "disk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(volume), "1M"], check=True)
    exp = nbd.NbdExports(tmp_path / "state", "127.0.0.1", low, high)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", low))
        squatter.listen(1)
        try:
            export = exp.start("v1", "a1", volume, "raw")
            assert export.port == low + 1
        finally:
            exp.stop("a1")


def test_no_free_port_is_an_error(tmp_path: Path) -> None:
    low, _ = free_range(0)
    volume = tmp_path / "disk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(volume), "1M"], check=True)
    exp = nbd.NbdExports(tmp_path / "state", "127.0.0.1", low, low)
    try:
        exp.start("v1", "a1", volume, "raw")
        with pytest.raises(DriverError, match="no free NBD port"):
            exp.start("v1", "a2", volume, "raw")
    finally:
        exp.stop("a1")


def test_adopt_keeps_live_exports_and_drops_dead_ones(tmp_path: Path) -> None:
    low, high = free_range()
    volume = tmp_path / "disk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(volume), "1M"], check=True)
    state = tmp_path / "state"
    first = nbd.NbdExports(state, "127.0.0.1", low, high)
    live = first.start("v1", "live", volume, "raw")
    dead = first.start("v1", "dead", volume, "raw")
    try:
        os.kill(dead.pid or 0, 15)
        while not nbd.process_exited(dead.pid or 0):
            pass
        # a record whose PID is alive but another program (a recycled PID): never signalled
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            record = json.loads((state / "live.json").read_text())
            record.update(attachment_id="impostor", pid=sleeper.pid)
            (state / "impostor.json").write_text(json.dumps(record))
            second = nbd.NbdExports(state, "127.0.0.1", low, high)  # the restarted agent
            kept, removed = second.adopt()
            assert [e.attachment_id for e in kept] == ["live"]
            assert sorted(removed) == ["dead", "impostor"]
            assert second.stop("impostor") is False
            assert sleeper.poll() is None
            assert second.get("live") == live
            assert second.start("v1", "live", volume, "raw") == live
        finally:
            sleeper.kill()
            sleeper.wait()
    finally:
        first.stop("live")
        first.stop("dead")


def test_tmpfs_like_directories_fall_back_from_o_direct(tmp_path: Path) -> None:
    exp = nbd.NbdExports(tmp_path, "127.0.0.1", 10809, 10810, direct_io=False)
    argv = exp.argv("v1", "a1", tmp_path / "volume-v1", "raw", 10809)
    assert "--cache=writeback" in argv and "--aio=threads" in argv
    exp.direct_io = True
    argv = exp.argv("v1", "a1", tmp_path / "volume-v1", "qcow2", 10809)
    assert argv[0] == "qemu-nbd" and argv[-1] == str(tmp_path / "volume-v1")
    for option in (
        "--fork",
        "--persistent",
        "--shared=4",
        "--bind=127.0.0.1",
        "--port=10809",
        "--export-name=volume-v1",
        "--format=qcow2",
        "--cache=none",
        "--aio=native",
        "--discard=unmap",
    ):
        assert option in argv
    assert isinstance(nbd.supports_o_direct(tmp_path), bool)
