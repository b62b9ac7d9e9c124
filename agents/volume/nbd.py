"""NBD exports: one ``qemu-nbd`` per attachment, outliving the agent.

Each export is::

    qemu-nbd --fork --pid-file <state_dir>/<attachment>.pid --persistent --shared=4
             --bind <export_address> --port <port> --export-name volume-<volume id>
             --format <raw|qcow2> --cache=none --aio=native --discard=unmap <volume file>

- ``--fork``: the parent exits once the server listens (or fails: port taken, file locked), so
  :meth:`NbdExports.start` knows the outcome at once; the server's PID is in the PID file.
- The command runs in its own session (``start_new_session``), and the systemd unit uses
  ``KillMode=process``: stopping or restarting the agent leaves the exports (and the guests
  using them) alone.
- ``--persistent``: the server stays when its client disconnects (a guest's QEMU reconnects);
  ``--shared=4`` lets a reconnecting client in while the old connection is being torn down,
  without opening the export to any number of writers.
- ``--cache=none --aio=native`` (O_DIRECT: the host page cache is bypassed, data is on disk when
  the guest flushes). On a file system without O_DIRECT (tmpfs) ``--cache=writeback
  --aio=threads`` is used instead (probed once).
- The port is the lowest of ``export_port_min``..``export_port_max`` that no export of ours
  holds and that can be bound on ``export_address`` now; if another process takes it first the
  start is retried on the next one.

State: ``<state_dir>/<attachment id>.json`` per export (volume id, attachment id, pid, host, port,
export name, file, argv). At start the agent adopts the exports whose process still runs and
removes the records of dead ones. A raw volume may have several exports at once (two attachments);
a qcow2 one only one (two processes writing qcow2 metadata would corrupt it; QEMU's image
locking refuses it anyway). A process is signalled only when ``/proc/<pid>/cmdline`` is
the argv recorded for it (a recycled PID is never killed).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from agents.volume.driver import DriverError, Export, valid_id

LOG = logging.getLogger("cirrus.volume.nbd")

SHARED_CLIENTS = 4
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 5


def export_name(volume_id: str) -> str:
    return f"volume-{volume_id}"


def supports_o_direct(directory: Path) -> bool:
    """Whether files in ``directory`` can be opened with O_DIRECT (not on tmpfs)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".odirect-", dir=directory)
    os.close(fd)
    try:
        try:
            probe = os.open(name, os.O_RDWR | getattr(os, "O_DIRECT", 0))
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return False
            raise
        os.close(probe)
        return True
    finally:
        os.unlink(name)


def port_free(address: str, port: int) -> bool:
    """Can a listening socket bind ``address:port`` now (as qemu-nbd does: SO_REUSEADDR)?"""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
            sock.listen(1)
        except OSError:
            return False
    return True


def process_cmdline(pid: int) -> list[str] | None:
    """The argv of a live (non-zombie) process, or None."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    if state == "Z" or not raw:
        return None
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


def process_exited(pid: int) -> bool:
    """Whether every thread of ``pid`` has ended (its file descriptors, the listening socket
    among them, are closed). A multi-threaded process whose main thread has exited is a zombie
    leader while its other threads still hold the files."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return True
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            return False
    return True


class NbdExports:
    def __init__(
        self,
        state_dir: str | Path,
        address: str,
        port_min: int = 10809,
        port_max: int = 10999,
        binary: str = "qemu-nbd",
        direct_io: bool | None = None,
    ) -> None:
        if not 0 < port_min <= port_max < 65536:
            raise ValueError(f"invalid port range {port_min}..{port_max}")
        self.state_dir = Path(state_dir)
        self.address = address
        self.port_min = port_min
        self.port_max = port_max
        self.binary = binary
        self.direct_io = direct_io  # None: probed on the volume file's directory
        self._lock = threading.Lock()

    # -- records ---------------------------------------------------------------------------------

    def _record_path(self, attachment_id: str) -> Path:
        return self.state_dir / f"{valid_id(attachment_id, 'attachment id')}.json"

    def _pid_path(self, attachment_id: str) -> Path:
        return self.state_dir / f"{attachment_id}.pid"

    def _log_path(self, attachment_id: str) -> Path:
        return self.state_dir / f"{attachment_id}.log"

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _write(self, record: dict[str, Any]) -> None:
        path = self._record_path(record["attachment_id"])
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def _forget(self, attachment_id: str) -> None:
        for path in (
            self._record_path(attachment_id),
            self._pid_path(attachment_id),
            self._log_path(attachment_id),
        ):
            path.unlink(missing_ok=True)

    def _alive(self, record: dict[str, Any]) -> bool:
        """The record's process runs and is the qemu-nbd it describes."""
        pid = record.get("pid")
        if not isinstance(pid, int) or pid <= 1:
            return False
        return process_cmdline(pid) == record.get("argv")

    @staticmethod
    def _export(record: dict[str, Any]) -> Export:
        return Export(
            volume_id=record["volume_id"],
            attachment_id=record["attachment_id"],
            host=record["host"],
            port=int(record["port"]),
            export_name=record["export_name"],
            pid=record.get("pid"),
        )

    def _records(self) -> list[dict[str, Any]]:
        if not self.state_dir.is_dir():
            return []
        records = []
        for path in sorted(self.state_dir.glob("*.json")):
            record = self._read(path)
            if record is not None and path.stem == record.get("attachment_id"):
                records.append(record)
        return records

    # -- public ----------------------------------------------------------------------------------

    def adopt(self) -> tuple[list[Export], list[str]]:
        """After a restart: the live exports kept, and the attachment ids of dead ones removed."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        kept: list[Export] = []
        removed: list[str] = []
        with self._lock:
            for record in self._records():
                if self._alive(record):
                    kept.append(self._export(record))
                else:
                    self._forget(record["attachment_id"])
                    removed.append(record["attachment_id"])
        for export in kept:
            LOG.info(
                "adopted export of volume %s for attachment %s: pid %s port %s",
                export.volume_id,
                export.attachment_id,
                export.pid,
                export.port,
            )
        for attachment_id in removed:
            LOG.warning("export of attachment %s had died: record removed", attachment_id)
        return kept, removed

    def live(self) -> list[Export]:
        """The live exports (records of dead processes are left for :meth:`adopt`/:meth:`start`)."""
        return [self._export(r) for r in self._records() if self._alive(r)]

    def get(self, attachment_id: str) -> Export | None:
        record = self._read(self._record_path(attachment_id))
        if record is not None and self._alive(record):
            return self._export(record)
        return None

    def start(self, volume_id: str, attachment_id: str, path: Path, fmt: str) -> Export:
        """The attachment's export: the live one, or a new qemu-nbd."""
        with self._lock:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            record = self._read(self._record_path(attachment_id))
            if record is not None:
                if self._alive(record):
                    if record.get("volume_id") != volume_id:
                        raise DriverError(
                            f"attachment {attachment_id} already exports volume "
                            f"{record.get('volume_id')}, not {volume_id}"
                        )
                    return self._export(record)
                self._forget(attachment_id)
            if fmt != "raw":
                for other in self._records():
                    if other.get("volume_id") == volume_id and self._alive(other):
                        raise DriverError(
                            f"volume {volume_id} is already exported for attachment "
                            f"{other['attachment_id']}: a {fmt} volume has one writer at a time "
                            "(only raw volumes can be exported twice)"
                        )
            if self.direct_io is None:
                self.direct_io = supports_o_direct(path.parent)
            used = {int(r["port"]) for r in self._records() if self._alive(r)}
            last_error = "no port free"
            for _ in range(START_ATTEMPTS):
                port = self._free_port(used)
                if port is None:
                    break
                try:
                    record = self._spawn(volume_id, attachment_id, path, fmt, port)
                except _PortTaken as exc:
                    used.add(port)
                    last_error = str(exc)
                    continue
                self._write(record)
                LOG.info(
                    "volume %s exported for attachment %s on %s:%d (pid %d)",
                    volume_id,
                    attachment_id,
                    self.address,
                    port,
                    record["pid"],
                )
                return self._export(record)
            raise DriverError(
                f"no free NBD port in {self.port_min}-{self.port_max} on {self.address} "
                f"({last_error})"
            )

    def stop(self, attachment_id: str) -> bool:
        """Stop the attachment's qemu-nbd (SIGTERM, then SIGKILL); False when none ran."""
        with self._lock:
            record = self._read(self._record_path(attachment_id))
            if record is None:
                self._forget(attachment_id)
                return False
            stopped = False
            if self._alive(record):
                pid = int(record["pid"])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_TIMEOUT
                while not process_exited(pid) and time.monotonic() < deadline:
                    time.sleep(0.02)
                if not process_exited(pid):  # verified above; a PID is not reused before
                    with contextlib.suppress(ProcessLookupError):  # it is reaped
                        os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + STOP_TIMEOUT
                while not process_exited(pid) and time.monotonic() < deadline:
                    time.sleep(0.02)
                stopped = True
                LOG.info(
                    "export of volume %s for attachment %s stopped (pid %d)",
                    record.get("volume_id"),
                    attachment_id,
                    pid,
                )
            self._forget(attachment_id)
            return stopped

    # -- internals -------------------------------------------------------------------------------

    def _free_port(self, used: set[int]) -> int | None:
        for port in range(self.port_min, self.port_max + 1):
            if port not in used and port_free(self.address, port):
                return port
        return None

    def argv(
        self, volume_id: str, attachment_id: str, path: Path, fmt: str, port: int
    ) -> list[str]:
        cache = (
            ["--cache=none", "--aio=native"]
            if self.direct_io
            else ["--cache=writeback", "--aio=threads"]
        )
        return [
            self.binary,
            "--fork",
            f"--pid-file={self._pid_path(attachment_id)}",
            "--persistent",
            f"--shared={SHARED_CLIENTS}",
            f"--bind={self.address}",
            f"--port={port}",
            f"--export-name={export_name(volume_id)}",
            f"--format={fmt}",
            *cache,
            "--discard=unmap",
            str(path),
        ]

    def _spawn(
        self, volume_id: str, attachment_id: str, path: Path, fmt: str, port: int
    ) -> dict[str, Any]:
        argv = self.argv(volume_id, attachment_id, path, fmt, port)
        pid_path = self._pid_path(attachment_id)
        log_path = self._log_path(attachment_id)
        pid_path.unlink(missing_ok=True)
        LOG.debug("starting %s", argv)
        with open(log_path, "wb") as log, open(os.devnull, "rb") as devnull:
            try:
                proc = subprocess.run(
                    argv,
                    stdin=devnull,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,  # its own session: agent restarts leave it alone
                    timeout=START_TIMEOUT,
                    check=False,
                )
            except FileNotFoundError:
                raise DriverError(f"{self.binary} is not installed (package qemu-utils)") from None
            except subprocess.TimeoutExpired:
                raise DriverError(
                    f"{self.binary} did not start within {START_TIMEOUT:g}s"
                ) from None
        output = log_path.read_text(errors="replace").strip()
        if proc.returncode != 0:
            if "Address already in use" in output or "Failed to bind" in output:
                raise _PortTaken(f"port {port}: {output.splitlines()[-1] if output else ''}")
            raise DriverError(
                f"qemu-nbd for volume {volume_id} failed: {output or proc.returncode}"
            )
        try:
            pid = int(pid_path.read_text().strip())
        except (OSError, ValueError):
            raise DriverError(f"qemu-nbd for volume {volume_id} wrote no PID file") from None
        return {
            "volume_id": volume_id,
            "attachment_id": attachment_id,
            "pid": pid,
            "host": self.address,
            "port": port,
            "export_name": export_name(volume_id),
            "path": str(path),
            "format": fmt,
            "argv": argv,
            "started_at": time.time(),
        }


def stop_all(state_dir: str | Path) -> int:
    """Stop every export recorded in ``state_dir`` (tests, decommissioning); how many ran."""
    exports = NbdExports(state_dir, "127.0.0.1")
    directory = Path(state_dir)
    if not directory.is_dir():
        return 0
    return sum(1 for record in sorted(directory.glob("*.json")) if exports.stop(record.stem))


class _PortTaken(Exception):
    pass
