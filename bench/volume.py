"""Block storage figures: NBD throughput against the local file, and attach/detach latency.

    python bench/volume.py [--size-gib 1] [--address 127.0.0.1] [--runs 3] [--dir DIR]
                           [--cloud cirrus] [--server SERVER] [--attaches 5] [--timeout 120]

Part 1 (runs anywhere ``qemu-img`` and ``qemu-nbd`` are installed, no cloud needed): a raw volume
file of ``--size-gib`` in ``--dir`` (default: a temporary directory under /var/tmp), exported by
the volume agent's own code (:class:`agents.volume.nbd.NbdExports`, the same ``qemu-nbd`` flags
as in production) on ``--address``. ``qemu-img bench`` (sequential, 1 MiB requests, queue depth
8, ``-t none``) writes and then reads the whole volume, locally (``-f raw FILE``) and through
``nbd://ADDRESS:PORT/EXPORT``; the best of ``--runs`` is printed in MB/s with the ratio NBD/local
beside the target (NBD at least half of local).

Part 2 (``--cloud NAME`` with ``--server``, through openstacksdk): a 1 GiB volume
``bench-vol-<random>`` is created, then ``--attaches`` times attached to the server (``POST
/servers/{id}/os-volume_attachments``, timed until the volume shows ``in-use``) and detached
(``DELETE``, timed until ``available``), polled every 0.1 s; p50/p90/max beside the target
(p50 <= 3 s). The volume is detached and deleted in a ``finally``. A cloud missing from
clouds.yaml prints "skipped" (exit 0).

Figures only: the exit status is 1 on a functional error (a tool failing, a volume in error, a
timeout), never because of a time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.volume import nbd  # noqa: E402

MiB = 1024**2
GiB = 1024**3
THROUGHPUT_TARGET = "target: NBD at least half of local"
LATENCY_TARGET = "target p50 <= 3 s"
STATUS_POLL = 0.1
COMPLETED = re.compile(r"Run completed in ([0-9.]+) seconds")


class BenchError(RuntimeError):
    """A functional failure: the benchmark exits 1."""


class CloudMissing(RuntimeError):
    """No such cloud in clouds.yaml: part 2 is skipped (exit 0)."""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def qemu_img_bench(target: str, size: int, write: bool) -> float:
    """Seconds ``qemu-img bench`` takes to read or write ``size`` bytes sequentially."""
    count = size // MiB
    argv = ["qemu-img", "bench", "-f", "raw", "-t", "none", "-s", "1M", "-d", "8", "-c"]
    argv += [str(count)]
    if write:
        argv += ["-w", "--pattern=0xa5"]
    argv.append(target)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
    match = COMPLETED.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise BenchError(f"{' '.join(argv)}: {proc.stdout}{proc.stderr}")
    return float(match.group(1))


def throughput(args: argparse.Namespace) -> None:
    for tool in ("qemu-img", "qemu-nbd"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed (package qemu-utils)")
    size = int(args.size_gib * GiB) // MiB * MiB
    base = Path(args.dir) if args.dir else Path("/var/tmp")
    work = Path(tempfile.mkdtemp(prefix="bench-volume-", dir=base))
    exports = nbd.NbdExports(work / "exports", args.address, args.port_min, args.port_min + 99)
    try:
        volume = work / "volume-bench"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "raw", str(volume), str(size)], check=True
        )
        export = exports.start("bench", "bench-attachment", volume, "raw")
        url = f"nbd://{export.host}:{export.port}/{export.export_name}"
        if ":" in export.host:
            url = f"nbd://[{export.host}]:{export.port}/{export.export_name}"
        print(f"volume: {volume} ({size / GiB:g} GiB raw), export {url}")
        record = json.loads((work / "exports" / "bench-attachment.json").read_text())
        print(f"qemu-nbd: {' '.join(record['argv'])}")
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        print(
            f"qemu-img bench: sequential, 1 MiB requests, depth 8, -t none "
            f"({os.cpu_count()} CPUs, load average {load}: NBD needs two busy processes)"
        )
        results: dict[tuple[str, str], float] = {}
        # local write first: it fills the file, so every read below reads data, not holes
        for mode in ("write", "read"):
            for where, target in (("local", str(volume)), ("nbd", url)):
                best = min(qemu_img_bench(target, size, mode == "write") for _ in range(args.runs))
                results[(mode, where)] = size / best / 1e6
        for mode in ("write", "read"):
            local, over = results[(mode, "local")], results[(mode, "nbd")]
            print(
                f"  sequential {mode:5}: local {local:8.1f} MB/s, NBD {over:8.1f} MB/s, "
                f"ratio {over / local:.2f} ({THROUGHPUT_TARGET}; best of {args.runs})"
            )
    finally:
        exports.stop("bench-attachment")
        shutil.rmtree(work, ignore_errors=True)


class AttachBench:
    def __init__(self, cloud: str, server: str, timeout: float) -> None:
        import openstack

        try:
            self.conn = openstack.connect(cloud=cloud)
        except openstack.exceptions.ConfigException as exc:
            raise CloudMissing(str(exc)) from None
        self.timeout = timeout
        found = self.conn.compute.find_server(server, ignore_missing=True)
        if found is None:
            raise BenchError(f"server {server!r} not found")
        self.server_id: str = found.id
        self.volume_id: str | None = None
        self.attached = False

    def status(self) -> str:
        assert self.volume_id is not None
        resp = self.conn.block_storage.get(f"/volumes/{self.volume_id}")
        if resp.status_code != 200:
            raise BenchError(f"GET volume: {resp.status_code} {resp.text[:300]}")
        return str(resp.json()["volume"]["status"])

    def wait(self, wanted: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            status = self.status()
            if status == wanted:
                return
            if status.startswith("error"):
                raise BenchError(f"volume {self.volume_id} is {status}")
            if time.monotonic() > deadline:
                raise BenchError(f"volume {self.volume_id} still {status} after {self.timeout}s")
            time.sleep(STATUS_POLL)

    def create(self) -> None:
        body = {"volume": {"size": 1, "name": f"bench-vol-{secrets.token_hex(4)}"}}
        resp = self.conn.block_storage.post("/volumes", json=body)
        if resp.status_code not in (200, 202):
            raise BenchError(f"POST /volumes: {resp.status_code} {resp.text[:300]}")
        self.volume_id = resp.json()["volume"]["id"]
        self.wait("available")

    def attach(self) -> float:
        body = {"volumeAttachment": {"volumeId": self.volume_id}}
        started = time.monotonic()
        resp = self.conn.compute.post(f"/servers/{self.server_id}/os-volume_attachments", json=body)
        if resp.status_code != 200:
            raise BenchError(f"POST os-volume_attachments: {resp.status_code} {resp.text[:300]}")
        self.attached = True
        self.wait("in-use")
        return time.monotonic() - started

    def detach(self) -> float:
        started = time.monotonic()
        resp = self.conn.compute.delete(
            f"/servers/{self.server_id}/os-volume_attachments/{self.volume_id}"
        )
        if resp.status_code not in (202, 204):
            raise BenchError(f"DELETE os-volume_attachments: {resp.status_code} {resp.text[:300]}")
        self.wait("available")
        self.attached = False
        return time.monotonic() - started

    def cleanup(self) -> None:
        if self.volume_id is None:
            return
        try:
            if self.attached:
                self.conn.compute.delete(
                    f"/servers/{self.server_id}/os-volume_attachments/{self.volume_id}"
                )
                self.wait("available")
        finally:
            self.conn.block_storage.delete(f"/volumes/{self.volume_id}")


def fmt_s(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):.2f} s, p90 {pct(values, 0.9):.2f} s, "
        f"max {max(values):.2f} s (n={len(values)})"
    )


def latency(args: argparse.Namespace) -> None:
    if not args.server:
        raise BenchError("--cloud needs --server (the server to attach to)")
    bench = AttachBench(args.cloud, args.server, args.timeout)
    attaches: list[float] = []
    detaches: list[float] = []
    try:
        bench.create()
        for _ in range(args.attaches):
            attaches.append(bench.attach())
            detaches.append(bench.detach())
    finally:
        bench.cleanup()
    print(f"attach (POST until in-use):    {fmt_s(attaches)} ({LATENCY_TARGET})")
    print(f"detach (DELETE until available): {fmt_s(detaches)}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else "")
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--address", default="127.0.0.1", help="where qemu-nbd listens")
    parser.add_argument("--port-min", type=int, default=20809)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", help="directory for the volume file (default /var/tmp)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--cloud", help="clouds.yaml entry: also measure attach/detach")
    parser.add_argument("--server", help="server (name or id) to attach to")
    parser.add_argument("--attaches", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        if not args.skip_throughput:
            print("== NBD throughput (qemu-nbd) vs local file")
            throughput(args)
        if args.cloud:
            print(f"== attach/detach latency on cloud {args.cloud}, server {args.server}")
            try:
                latency(args)
            except CloudMissing as exc:
                print(f"skipped: {exc}")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
