"""Benchmark the deploy: fresh lab nodes, a first deploy, an idempotent re-run, where time goes.

Runs the real playbooks through ansible-runner (its event stream gives every task's start, role and
result) against lab nodes on this machine:

1. ``lab-down`` then ``lab-up`` (playbooks/lab-up.yml): fresh nodes, the base image from its cache;
2. ``site.yml``: the first deploy onto those nodes;
3. ``site.yml`` again: the idempotent re-run (changed must be 0 on every host);
4. ``lab-down`` (unless ``--keep``).

Prints the times beside the targets (deploy <= 5 min with the base image cached, <= 10 min from
nothing; re-run <= 90 s), the changed counts per host, and the wall time per role of both runs.
It never fails on time; it exits non-zero only when a playbook fails.

    .venv/bin/python bench/deploy.py [--inventory inventory/lab.yml] [--cold] [--keep]

Edits to the source tree while it runs change the build between the two runs (and so the re-run's
changed count); set ``CIRRUS_SOURCE_DIR`` to a frozen copy of the tree to measure a stable build.

``--cold`` measures a deploy from nothing without deleting any cache: the lab base image and the
wheelhouse are built into empty temporary caches (this needs a Debian mirror and a package index,
like a fresh machine). Without it, both caches are used as they are; delete /var/cache/cirrus-lab
and .cache/wheelhouse to measure the same by hand. Needs root (systemd-nspawn).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_DEPLOY_CACHED = 300.0
TARGET_DEPLOY_COLD = 600.0
TARGET_RERUN = 90.0


@dataclass
class Run:
    """One playbook run: its wall time, result, per-host stats and per-task timings."""

    name: str
    seconds: float = 0.0
    status: str = ""
    rc: int = 0
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    # (start time, label) of every task, handler and play start, in order
    marks: list[tuple[datetime, str]] = field(default_factory=list)
    end: datetime | None = None
    stdout_tail: str = ""

    def per_label(self) -> dict[str, float]:
        """Wall time per role (or per play for tasks outside roles) from consecutive task starts."""
        totals: dict[str, float] = defaultdict(float)
        marks = sorted(self.marks, key=lambda mark: mark[0])
        for (start, label), following in zip(marks, marks[1:] + [(self.end, "")], strict=True):
            if start is None or following[0] is None:
                continue
            totals[label] += max((following[0] - start).total_seconds(), 0.0)
        return dict(totals)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def run_playbook(
    name: str,
    playbook: str,
    inventory: Path,
    private_dir: Path,
    extravars: dict[str, Any] | None = None,
) -> Run:
    import ansible_runner  # imported here so that --help works without it

    result = Run(name)

    def on_event(event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        created = _parse_time(event.get("created"))
        if kind in ("playbook_on_task_start", "playbook_on_handler_task_start"):
            role = data.get("role")
            label = f"role {role}" if role else f"play: {data.get('play', '?')}"
            result.marks.append((created, label))  # type: ignore[arg-type]
        elif kind == "playbook_on_play_start":
            result.marks.append((created, f"play: {data.get('play', '?')}"))  # type: ignore[arg-type]
        elif kind == "playbook_on_stats":
            result.end = created
            for key in ("ok", "changed", "failures", "dark", "skipped"):
                for host, count in (data.get(key) or {}).items():
                    result.stats.setdefault(host, {})[key] = count
        return True

    (private_dir / name).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(private_dir / name),
        project_dir=str(REPO),
        playbook=str(REPO / "playbooks" / playbook),
        inventory=str(inventory),
        extravars=extravars or {},
        envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        event_handler=on_event,
        quiet=True,
    )
    result.seconds = time.monotonic() - started
    result.status, result.rc = runner.status, runner.rc
    if result.end is None:
        result.end = datetime.now(result.marks[-1][0].tzinfo) if result.marks else None
    if runner.rc != 0:
        try:
            result.stdout_tail = "\n".join(runner.stdout.read().splitlines()[-60:])
        except (OSError, AttributeError):
            result.stdout_tail = "(no output)"
    return result


def verdict(seconds: float, target: float) -> str:
    return f"{'within' if seconds <= target else 'OVER'} the target of {target:.0f} s"


def print_breakdown(run: Run) -> None:
    totals = run.per_label()
    whole = sum(totals.values()) or 1.0
    print(f"  where the time goes ({run.name}, {run.seconds:.1f} s):")
    for label, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        if seconds < 0.05:
            continue
        shown = label if len(label) <= 48 else label[:45] + "..."
        print(f"    {shown:<48} {seconds:7.1f} s  {100 * seconds / whole:5.1f} %")


def print_changed(run: Run) -> None:
    for host, counts in sorted(run.stats.items()):
        print(
            f"    {host:<20} ok={counts.get('ok', 0):<4} changed={counts.get('changed', 0):<4} "
            f"failed={counts.get('failures', 0)} unreachable={counts.get('dark', 0)}"
        )


def fail(run: Run) -> None:
    print(f"\n{run.name} failed ({run.status}, rc={run.rc}); last lines of its output:")
    print(run.stdout_tail)
    sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=Path, default=REPO / "inventory" / "lab.yml")
    parser.add_argument(
        "--cold", action="store_true", help="empty temporary caches (needs a mirror)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the lab running at the end"
    )
    args = parser.parse_args(argv)

    if os.geteuid() != 0 or shutil.which("systemd-nspawn") is None:
        print("bench/deploy.py: skipped: needs root and systemd-nspawn (the lab's nodes)")
        return 0
    # ansible-runner starts ansible-playbook from PATH: use the one beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    inventory = args.inventory.resolve()

    with tempfile.TemporaryDirectory(prefix="cirrus-bench-deploy-") as tmp:
        private = Path(tmp)
        extravars: dict[str, Any] = {}
        wheel_cache = REPO / ".cache" / "wheelhouse"
        if args.cold:
            extravars = {
                "lab_cache_dir": str(private / "lab-cache"),
                "common_wheelhouse_cache_dir": str(private / "wheelhouse"),
            }
            wheel_cache = private / "wheelhouse"
        cached = "cold: empty caches" if args.cold else (
            "base image and dependency wheels cached"
            if wheel_cache.is_dir() and any(wheel_cache.glob("deps-*"))
            else "base image cached, dependency wheels built during the deploy"
        )
        source = os.environ.get("CIRRUS_SOURCE_DIR")
        if source:
            cached += f"; Cirrus built from CIRRUS_SOURCE_DIR={source}"
        shown = inventory.relative_to(REPO) if inventory.is_relative_to(REPO) else inventory
        print(f"deploy benchmark on {shown} ({cached})")

        down = run_playbook("lab-down-before", "lab-down.yml", inventory, private)
        if down.rc != 0:
            fail(down)
        up = run_playbook("lab-up", "lab-up.yml", inventory, private, extravars)
        if up.rc != 0:
            fail(up)
        first = run_playbook("deploy", "site.yml", inventory, private, extravars)
        if first.rc != 0:
            fail(first)
        again = run_playbook("re-run", "site.yml", inventory, private, extravars)
        if again.rc != 0:
            fail(again)
        if not args.keep:
            down = run_playbook("lab-down", "lab-down.yml", inventory, private)
            if down.rc != 0:
                fail(down)

    target = TARGET_DEPLOY_COLD if args.cold else TARGET_DEPLOY_CACHED
    total = up.seconds + first.seconds
    changed_again = {host: c.get("changed", 0) for host, c in again.stats.items()}
    print()
    base = "" if args.cold else ", base image cached"
    rerun_ok = "yes" if not any(changed_again.values()) else "NO"
    print(f"  lab-up (fresh nodes{base}):{'':<{26 - len(base)}}{up.seconds:7.1f} s")
    print(f"  deploy (site.yml on fresh nodes):             {first.seconds:7.1f} s")
    print(f"  lab-up + deploy:{'':30}{total:7.1f} s  {verdict(total, target)}")
    print(
        f"  idempotent re-run (site.yml again):           {again.seconds:7.1f} s  "
        f"{verdict(again.seconds, TARGET_RERUN)}"
    )
    print(f"  re-run changed=0 on every host: {rerun_ok}")
    print("  first deploy:")
    print_changed(first)
    print("  re-run:")
    print_changed(again)
    print()
    print_breakdown(first)
    print()
    print_breakdown(again)
    if not args.cold:
        print()
        print("  From nothing: `bench/deploy.py --cold` (empty temporary base-image and wheel")
        print("  caches; needs a Debian mirror and a package index;")
        print(f"  target {TARGET_DEPLOY_COLD:.0f} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
