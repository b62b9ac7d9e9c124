"""Identity token figures: issue and validate throughput, and a worker's memory.

    python bench/identity_tokens.py [--seconds 10] [--clients 2]

Starts its own MariaDB and identity under gunicorn (2 workers) on loopback with the test helpers,
then prints:

- the cost of one bcrypt(12) password check (median of 10) and the floor it sets for token issue:
  ``workers / check time`` (every password token costs one check, and a check holds a worker);
- token issue (``POST /v3/auth/tokens?nocatalog``, password, project scope): throughput and p50
  with N concurrent clients for the given time;
- token validation (``GET /v3/auth/tokens?nocatalog`` with ``X-Subject-Token``, the request the
  auth middleware of every service sends): throughput and p50, same clients and time;
- the resident memory (VmRSS from ``/proc/<pid>/status``) of the gunicorn workers after the load.

Each figure is printed beside its target (validate >= 500/s, issue >= 90 % of the floor, worker
RSS <= 80 MB). The figures never change the exit status; everything started is stopped at the end.
Clients are separate processes, each with one keep-alive ``requests.Session``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from control.identity import passwords  # noqa: E402
from tests.fixtures.identity_server import IdentityServer  # noqa: E402
from tests.fixtures.mariadb import MariaDBServer  # noqa: E402

WORKERS = 2
MAX_REQUESTS_PER_CLIENT = 200_000  # a bound on every loop, whatever the clock does
TARGET_VALIDATE = 500.0
TARGET_ISSUE_SHARE = 0.90
TARGET_RSS_MB = 80.0


@dataclass
class LoadResult:
    count: int
    errors: int
    elapsed: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


def _client(
    job: tuple[str, str, dict[str, Any], float],
) -> tuple[int, int, list[float], float]:
    """One client process: repeat one request until the deadline.

    Returns (successes, errors, latencies, seconds from the first request to the last answer).
    """
    kind, url, payload, seconds = job
    session = requests.Session()
    ok = errors = 0
    latencies: list[float] = []
    began = time.monotonic()
    deadline = began + seconds
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        start = time.monotonic()
        if start >= deadline:
            break
        try:
            if kind == "issue":
                response = session.post(url, json=payload, timeout=30)
                good = response.status_code == 201
            else:
                response = session.get(url, headers=payload, timeout=30)
                good = response.status_code == 200
        except requests.RequestException:
            good = False
        latencies.append(time.monotonic() - start)
        if good:
            ok += 1
        else:
            errors += 1
    session.close()
    return ok, errors, latencies, time.monotonic() - began


def run_load(
    kind: str, url: str, payload: dict[str, Any], clients: int, seconds: float
) -> LoadResult:
    jobs = [(kind, url, payload, seconds)] * clients
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        results = pool.map(_client, jobs)
    return LoadResult(
        count=sum(r[0] for r in results),
        errors=sum(r[1] for r in results),
        elapsed=max(r[3] for r in results),
        latencies=[lat for r in results for lat in r[2]],
    )


def bcrypt_check_seconds(samples: int = 10) -> float:
    hashed = passwords.hash_password("bench-password-0123", passwords.MIN_ROUNDS)
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        passwords.check_password("bench-password-0123", hashed)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def line(label: str, text: str) -> None:
    print(f"{label:<24}{text}", flush=True)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load phase")
    parser.add_argument("--clients", type=int, default=2, help="concurrent client processes")
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 1.0), 120.0)
    clients = min(max(args.clients, 1), 32)

    print(
        f"identity tokens: {WORKERS} gunicorn workers, {clients} clients, {seconds:g} s per phase, "
        f"loopback, {os.cpu_count()} CPUs"
    )
    check = bcrypt_check_seconds()
    floor = WORKERS / check
    line("bcrypt(12) check", f"{check * 1000:.1f} ms (median of 10)")
    line("issue floor", f"{floor:.1f}/s ({WORKERS} workers / check time)")

    database = MariaDBServer()
    identity: IdentityServer | None = None
    try:
        database.start()
        identity = IdentityServer(database, workers=WORKERS)
        identity.start()
        admin_token, _ = identity.issue_token()
        subject, _ = identity.issue_token()

        issue = run_load(
            "issue",
            f"{identity.url}/auth/tokens?nocatalog",
            identity.auth_body("admin", identity.admin_password, "admin"),
            clients,
            seconds,
        )
        target_issue = TARGET_ISSUE_SHARE * floor
        line(
            "token issue",
            f"{issue.rate:.1f}/s, p50 {issue.p50_ms:.1f} ms (n={issue.count}, "
            f"errors {issue.errors})   target >= {target_issue:.1f}/s (90% of floor): "
            f"{verdict(issue.rate >= target_issue)}",
        )

        validate = run_load(
            "validate",
            f"{identity.url}/auth/tokens?nocatalog",
            {"X-Auth-Token": admin_token, "X-Subject-Token": subject},
            clients,
            seconds,
        )
        line(
            "token validate",
            f"{validate.rate:.1f}/s, p50 {validate.p50_ms:.2f} ms (n={validate.count}, "
            f"errors {validate.errors})   target >= {TARGET_VALIDATE:.0f}/s: "
            f"{verdict(validate.rate >= TARGET_VALIDATE)}",
        )

        workers = identity.worker_pids()
        sizes = [rss_mb(pid) for pid in workers]
        biggest = max(sizes, default=float("nan"))
        line(
            "worker RSS after load",
            f"{biggest:.1f} MB (largest of {len(sizes)}: "
            f"{', '.join(f'{s:.1f}' for s in sizes)} MB)   target <= {TARGET_RSS_MB:.0f} MB: "
            f"{verdict(biggest <= TARGET_RSS_MB)}",
        )
    finally:
        if identity is not None:
            identity.stop()
        database.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
