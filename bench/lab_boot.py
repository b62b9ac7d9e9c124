"""Lab figures: base build, lab-up with the base cached, node boot to SSH, re-run, lab-down.

    python bench/lab_boot.py [--inventory inventory/lab.yml] [--rebuild-base]

Runs playbooks/lab-up.yml and lab-down.yml through ansible-runner (tests/lab/labctl.py) and
prints:

- the base build (debootstrap and packages) when the base is not cached, or with
  --rebuild-base (which deletes the cached bases first: the next lab-up anywhere rebuilds);
- lab-up from no nodes with the base cached: wall time;
- each node's boot to SSH: from the end of its start (systemd-nspawn launched and alive for
  0.5 s) to the end of its successful SSH login check;
- lab-up again (nothing to do) and lab-down: wall time.

Needs root. Skips (exit 0) when a lab is already running, so that it never removes someone's
nodes; always tears down what it started. The figures never change the exit status.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lab import labctl  # noqa: E402

CACHE_DIR = Path("/var/cache/cirrus-lab")
START_TASK = "Start each node that is not running"
LOGIN_TASK = "Check that the lab key logs in to each node"
BASE_TASK_FILE = "roles/lab/tasks/base.yml"


def timed(what: str, action: Callable[[], labctl.Run]) -> tuple[labctl.Run, float]:
    started = time.monotonic()
    run = action()
    seconds = time.monotonic() - started
    if run.status != "successful":
        print(f"{what} failed ({run.status}):\n{run.stdout[-3000:]}")
        labctl.lab_down()
        sys.exit(1)
    return run, seconds


def base_build_seconds(run: labctl.Run) -> float:
    """Sum of the durations of the tasks of base.yml that did something."""
    total = 0.0
    for event in run.events:
        data = event.get("event_data", {})
        if (
            event.get("event") == "runner_on_ok"
            and BASE_TASK_FILE in data.get("task_path", "")
            and data.get("res", {}).get("changed")
        ):
            total += labctl.task_seconds(data)
    return total


def slowest_tasks(run: labctl.Run, count: int = 3) -> str:
    """The tasks that took longest in a run, as 'name 1.2 s, ...'."""
    seconds: dict[str, float] = {}
    wanted = ("runner_on_ok", "runner_on_failed", "runner_on_skipped")
    for event in run.events:
        data = event.get("event_data", {})
        if event.get("event") in wanted and "start" in data and "end" in data:
            task = data.get("task", "?")
            seconds[task] = seconds.get(task, 0.0) + labctl.task_seconds(data)
    top = sorted(seconds.items(), key=lambda item: item[1], reverse=True)[:count]
    return ", ".join(f"{name} {value:.1f} s" for name, value in top)


def item_end_times(run: labctl.Run, task: str) -> dict[str, datetime]:
    ends: dict[str, datetime] = {}
    for event in run.events:
        data = event.get("event_data", {})
        if event.get("event") == "runner_item_on_ok" and data.get("task") == task:
            ends[labctl.loop_item(data)["key"]] = datetime.fromisoformat(event["created"])
    return ends


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=Path, default=labctl.REPO / "inventory" / "lab.yml")
    parser.add_argument("--rebuild-base", action="store_true")
    args = parser.parse_args()

    if os.geteuid() != 0:
        print("lab_boot: skipped (needs root)")
        return 0
    state = labctl.host_state()
    if state.node_dirs or state.nspawn_pids:
        print(f"lab_boot: skipped (a lab is running: {state.node_dirs}; `make lab-down` first)")
        return 0

    if args.rebuild_base and CACHE_DIR.is_dir():
        for base in CACHE_DIR.glob("base-*"):
            shutil.rmtree(base)
    cached = any(CACHE_DIR.glob("base-*"))
    inventory = args.inventory.resolve()
    print(f"inventory: {inventory}")
    try:
        if not cached:
            cold, cold_seconds = timed("lab-up (no cache)", lambda: labctl.lab_up(inventory))
            print(f"base build (debootstrap + packages): {base_build_seconds(cold):6.1f} s")
            print(f"lab-up with no cached base:          {cold_seconds:6.1f} s")
            print(f"  slowest: {slowest_tasks(cold)}")
            timed("lab-down", labctl.lab_down)
        else:
            print("base build: cached (use --rebuild-base to time it)")

        up, up_seconds = timed("lab-up", lambda: labctl.lab_up(inventory))
        print(f"lab-up with the base cached:         {up_seconds:6.1f} s")
        print(f"  slowest: {slowest_tasks(up)}")
        starts = item_end_times(up, START_TASK)
        logins = item_end_times(up, LOGIN_TASK)
        for node in sorted(starts):
            if node in logins:
                boot = (logins[node] - starts[node]).total_seconds()
                print(f"  {node}: start to SSH login         {boot:6.1f} s")

        again, again_seconds = timed("lab-up again", lambda: labctl.lab_up(inventory))
        print(f"lab-up again (changed={again.changed()}):        {again_seconds:6.1f} s")
        print(f"  slowest: {slowest_tasks(again)}")
    finally:
        down, down_seconds = timed("lab-down", labctl.lab_down)
        print(f"lab-down:                            {down_seconds:6.1f} s")
        print(f"  slowest: {slowest_tasks(down)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
