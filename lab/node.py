#!/usr/bin/env python3
"""Start lab nodes detached, and tell which are running. Called by roles/lab.

Ansible cannot leave a process running behind a task by itself, and reading /proc and lock
files is clearer here than in Jinja, so the role calls this script for two things:

``node.py start --name NAME --pid-file PID --log LOG -- [systemd-nspawn arguments...]``
    Start systemd-nspawn in a new session (setsid), stdin from /dev/null, console appended to
    LOG, record its PID in PID and return at once. Prints ``running`` when PID already names a
    live systemd-nspawn of this node (nothing is done) and ``started`` otherwise; fails, showing
    the end of the console log, when nspawn exits within its first second. The nspawn
    arguments must include ``--machine=NAME``, which is how a live process is recognised.

``node.py status --nodes-dir DIR [NAME...]``
    Print a JSON list, one entry per node (every directory of DIR when no NAME is given):

    - ``pid``: the recorded PID when it still is a live (not zombie) systemd-nspawn with
      ``--machine=NAME``, else null; ``running``: whether there is such a PID;
    - ``init_pid``: the node's PID 1 as seen from the host (the process whose root file system
      is the node's overlay and whose parent's is not), else null; ``processes``: how many
      processes run in the node. A node whose nspawn was killed keeps running without it;
      these find it (by the overlay's upper directory in /proc/PID/mountinfo);
    - ``locked``: whether some systemd-nspawn holds the lock on the node's root directory
      (DIR/NAME/.#root.lck), which catches a running node whose PID file was lost;
    - ``broken``: processes or a lock but no recorded nspawn;
    - ``power_off``: how to ask it to power off: ``{"pid", "signal"}`` (SIGTERM to nspawn,
      which passes SIGRTMIN+3 to the node's systemd; or SIGRTMIN+3 straight to a PID 1 left
      without its nspawn), or null when nothing runs;
    - ``kill``: the PIDs to SIGKILL, in order, if it does not: the node's PID 1 first (which
      ends every process of its PID namespace), then nspawn.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

NSPAWN = "systemd-nspawn"
SETTLE_SECONDS = 0.5


def live_node_pid(pid_file: Path, name: str) -> int | None:
    """Return the recorded PID if it is a running systemd-nspawn of this node, else None."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    args = [arg.decode(errors="replace") for arg in cmdline if arg]
    if not args or Path(args[0]).name != NSPAWN or f"--machine={name}" not in args:
        return None
    return None if state in ("Z", "X") else pid


def root_locked(node_dir: Path) -> bool:
    """Whether a process holds systemd-nspawn's lock on the node's root directory."""
    lock = node_dir / ".#root.lck"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        # nspawn takes an open-file-description lock; POSIX record locks conflict with it.
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console log)"


def start(args: argparse.Namespace) -> int:
    nspawn_args = args.nspawn_args[1:] if args.nspawn_args[:1] == ["--"] else args.nspawn_args
    if f"--machine={args.name}" not in nspawn_args:
        print(f"the systemd-nspawn arguments must include --machine={args.name}", file=sys.stderr)
        return 2
    if live_node_pid(args.pid_file, args.name) is not None:
        print("running")
        return 0

    with open(args.log, "ab") as log, open(os.devnull, "rb") as devnull:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {args.name}\n".encode())
        log.flush()
        process = subprocess.Popen(
            [NSPAWN, *nspawn_args],
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            close_fds=True,
            start_new_session=True,  # setsid: no controlling terminal, its own process group
        )
    tmp = args.pid_file.with_name(args.pid_file.name + ".tmp")
    tmp.write_text(f"{process.pid}\n")
    tmp.replace(args.pid_file)

    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            args.pid_file.unlink(missing_ok=True)
            print(
                f"systemd-nspawn for {args.name} exited with status {process.returncode}:\n"
                f"{tail(args.log)}",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.1)
    # The node outlives this script: it is reparented to PID 1, which reaps it when it exits.
    print("started")
    return 0


def node_processes(nodes_dir: Path) -> dict[str, dict[int, int]]:
    """Processes running inside lab nodes: node name => {pid: parent pid}.

    A process is inside a node when its root file system is an overlay whose upper directory
    is DIR/<name>/upper (read from /proc/PID/mountinfo, so that this works even when the
    overlay is no longer mounted on the host). Only processes whose root differs from ours
    are looked at.
    """
    own_root = os.stat("/").st_dev
    upper_of = (
        {
            str((nodes_dir / name / "upper").resolve()): name
            for name in (p.name for p in nodes_dir.iterdir() if p.is_dir())
        }
        if nodes_dir.is_dir()
        else {}
    )
    found: dict[str, dict[int, int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.stat(proc / "root").st_dev == own_root:
                continue
            mountinfo = (proc / "mountinfo").read_text()
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        for line in mountinfo.splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[4] == "/" and " - overlay " in line:
                options = line.split(" - overlay ", 1)[1]
                for option in options.split(","):
                    if option.startswith("upperdir=") and option[9:] in upper_of:
                        found.setdefault(upper_of[option[9:]], {})[int(proc.name)] = ppid
                break
    return found


def status(args: argparse.Namespace) -> int:
    nodes_dir: Path = args.nodes_dir
    names = args.names or (
        sorted(p.name for p in nodes_dir.iterdir() if p.is_dir()) if nodes_dir.is_dir() else []
    )
    inside = node_processes(nodes_dir)
    report = []
    for name in names:
        pid = live_node_pid(nodes_dir / name / "pid", name)
        processes = inside.get(name, {})
        init_pid = next(
            (p for p, parent in sorted(processes.items()) if parent not in processes), None
        )
        locked = root_locked(nodes_dir / name)
        if pid is not None:
            power_off = {"pid": pid, "signal": "TERM"}
        elif init_pid is not None:
            power_off = {"pid": init_pid, "signal": "RTMIN+3"}
        else:
            power_off = None
        report.append(
            {
                "name": name,
                "pid": pid,
                "running": pid is not None,
                "init_pid": init_pid,
                "processes": len(processes),
                "locked": locked,
                "broken": pid is None and (bool(processes) or locked),
                "power_off": power_off,
                "kill": [p for p in (init_pid, pid) if p is not None],
            }
        )
    print(json.dumps(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start lab nodes and tell which are running.")
    commands = parser.add_subparsers(dest="command", required=True)
    start_parser = commands.add_parser("start", help="start one node, detached")
    start_parser.add_argument("--name", required=True, help="node name (nspawn --machine)")
    start_parser.add_argument("--pid-file", required=True, type=Path)
    start_parser.add_argument("--log", required=True, type=Path, help="console log, appended to")
    start_parser.add_argument("nspawn_args", nargs=argparse.REMAINDER)
    start_parser.set_defaults(func=start)
    status_parser = commands.add_parser("status", help="JSON status of nodes")
    status_parser.add_argument("--nodes-dir", required=True, type=Path)
    status_parser.add_argument("names", nargs="*")
    status_parser.set_defaults(func=status)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
