"""Scheduler throughput: host selections (filter, weigh, atomic claim) per second with 100 and
1000 fake hosts on a private MariaDB.

    python bench/scheduler.py [--hosts 100,1000] [--selections 1000] [--threads 1,8] [--seconds 30]

Each run fills a fresh compute database with N compute hosts (up, enabled, 64 vCPUs, 256 GB RAM,
2 TB disk each) and calls ``SchedulerManager.select_destination`` for 1-vCPU/512 MB/1 GB servers
from T threads, as the RPC server's workers do (the RPC hop itself is measured by
``bench/rpc_roundtrip.py``). It prints selections per second and latency percentiles, then checks
that no host is overcommitted. Each run stops after ``--selections`` or ``--seconds``, whichever
comes first. Nothing is asserted about time (target: at least 100 per second with 1000 hosts).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, insert, select  # noqa: E402

from control.common import migrate  # noqa: E402
from control.common.context import RequestContext  # noqa: E402
from control.common.db import Database, utcnow  # noqa: E402
from control.compute import claims, models, services  # noqa: E402
from control.scheduler.manager import NoValidHost, SchedulerManager  # noqa: E402
from tests.fixtures.mariadb import MariaDBServer  # noqa: E402

TARGET = 100.0


def fill(database: Database, hosts: int) -> None:
    now = utcnow()
    with database.transaction() as sess:
        sess.execute(
            insert(models.Service),
            [
                {
                    "uuid": str(uuid.uuid4()),
                    "host": f"fake-{i:05d}",
                    "binary": services.COMPUTE_BINARY,
                    "topic": "compute",
                    "availability_zone": "nova",
                    "disabled": False,
                    "forced_down": False,
                    "last_seen_up": now,
                }
                for i in range(hosts)
            ],
        )
        sess.execute(
            insert(models.ComputeNode),
            [
                {
                    "uuid": str(uuid.uuid4()),
                    "host": f"fake-{i:05d}",
                    "hypervisor_hostname": f"fake-{i:05d}",
                    "hypervisor_type": "fake",
                    "vcpus": 64,
                    "memory_mb": 262144,
                    "local_gb": 2048,
                    "vcpus_used": 0,
                    "memory_mb_used": 0,
                    "local_gb_used": 0,
                    "cpu_info": "{}",
                }
                for i in range(hosts)
            ],
        )


def percentile(values: list[float], pct: float) -> float:
    return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]


def run(mariadb: MariaDBServer, hosts: int, selections: int, threads: int, seconds: float) -> None:
    url = mariadb.create_database("bench_sched")
    migrate.upgrade("compute", url)
    database = Database(url, pool_size=threads + 2)
    try:
        fill(database, hosts)
        manager = SchedulerManager(database, claims.Ratios(1.0, 1.0, 1.0), service_down_time=3600)
        ctxt = RequestContext()
        latencies: list[float] = []
        failures = 0
        lock = threading.Lock()
        remaining = [selections]
        deadline = time.monotonic() + seconds

        def worker() -> None:
            nonlocal failures
            while time.monotonic() < deadline:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                spec = {
                    "instance_uuid": str(uuid.uuid4()),
                    "vcpus": 1,
                    "memory_mb": 512,
                    "disk_gb": 1,
                }
                started = time.perf_counter()
                try:
                    manager.select_destination(ctxt, spec)
                except NoValidHost:
                    with lock:
                        failures += 1
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)

        began = time.perf_counter()
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        wall = time.perf_counter() - began
        with database.transaction() as sess:
            over = sess.scalar(
                select(func.count(models.ComputeNode.id)).where(
                    (models.ComputeNode.vcpus_used > models.ComputeNode.vcpus)
                    | (models.ComputeNode.memory_mb_used > models.ComputeNode.memory_mb)
                    | (models.ComputeNode.local_gb_used > models.ComputeNode.local_gb)
                )
            )
            placed = sess.scalar(select(func.count()).select_from(models.Allocation))
        latencies.sort()
        rate = len(latencies) / wall if wall else 0.0
        print(
            f"hosts={hosts:5d} threads={threads:2d} selections={len(latencies):5d} "
            f"rate={rate:7.1f}/s p50={statistics.median(latencies) * 1000:6.1f}ms "
            f"p95={percentile(latencies, 95) * 1000:6.1f}ms no_valid_host={failures} "
            f"placed={placed} overcommitted_hosts={over}"
            + ("" if hosts < 1000 else f"  (target >= {TARGET:g}/s)")
        )
    finally:
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="100,1000")
    parser.add_argument("--selections", type=int, default=1000)
    parser.add_argument("--threads", default="1,8")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    mariadb = MariaDBServer()
    mariadb.start()
    try:
        for hosts in (int(h) for h in args.hosts.split(",")):
            for threads in (int(t) for t in args.threads.split(",")):
                run(mariadb, hosts, args.selections, threads, args.seconds)
    finally:
        mariadb.stop()


if __name__ == "__main__":
    main()
