"""Drive the lab playbooks through ansible-runner, and look at the machine the way a user would.

Used by tests/lab/test_lab.py and bench/lab_boot.py. Playbooks run through ansible-runner's
Python API; the events it streams are kept so that callers can find task results and timings.
tests/fixtures/ansible_playbook.py runs its test plays through :func:`run_playbook` too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import ansible_runner

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
LAB_DIR = REPO / ".lab"
NODES_DIR = LAB_DIR / "nodes"
SSH_KEY = LAB_DIR / "ssh" / "id_ed25519"
BRIDGE = "cirlab0"
HOST_ADDRESS = "10.231.0.1"


@dataclass
class Run:
    """The outcome of one ansible-runner run, with its event stream."""

    status: str
    rc: int
    stats: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    stdout: str = ""

    def changed(self, host: str = "localhost") -> int:
        return int((self.stats.get("changed") or {}).get(host, 0))

    def failed_hosts(self) -> dict[str, int]:
        failures = dict(self.stats.get("failures") or {})
        failures.update(self.stats.get("dark") or {})
        return failures

    def results(self, task: str) -> list[dict[str, Any]]:
        """event_data of each result of the task with this name: per loop item for a loop."""
        per_item = ("runner_item_on_ok", "runner_item_on_failed")
        per_host = ("runner_on_ok", "runner_on_failed")
        mine = [e for e in self.events if e.get("event_data", {}).get("task") == task]
        items = [e["event_data"] for e in mine if e.get("event") in per_item]
        return items or [e["event_data"] for e in mine if e.get("event") in per_host]


def loop_item(event_data: dict[str, Any]) -> Any:
    """The loop item of a per-item result, whatever the task named its loop variable."""
    res = event_data["res"]
    return res[res.get("ansible_loop_var", "item")]


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_NOCOLOR": "1",
    }


def _run(extra_env: dict[str, str] | None = None, **kwargs: Any) -> Run:
    events: list[dict[str, Any]] = []

    def keep(event: dict[str, Any]) -> bool:
        events.append(event)
        return True

    with tempfile.TemporaryDirectory(prefix="cirrus-lab-runner-") as private_dir:
        result = ansible_runner.run(
            private_data_dir=private_dir,
            project_dir=str(REPO),
            envvars={**_env(), **(extra_env or {})},
            quiet=True,
            event_handler=keep,
            **kwargs,
        )
        # Runner.stdout opens the artifact anew on every access; read the file directly.
        stdout_file = Path(result.config.artifact_dir) / "stdout"
        stdout = stdout_file.read_text(errors="replace") if stdout_file.exists() else ""
        return Run(
            status=result.status,
            rc=result.rc,
            stats=result.stats or {},
            events=events,
            stdout=stdout,
        )


def playbook(name: str, inventory: Path | None = None, **extravars: Any) -> Run:
    """Run playbooks/<name> (with the inventory given, else the one of ansible.cfg)."""
    kwargs: dict[str, Any] = {"playbook": str(PLAYBOOKS / name)}
    if inventory is not None:
        kwargs["inventory"] = str(inventory)
    if extravars:
        kwargs["extravars"] = extravars
    return _run(**kwargs)


def run_playbook(path: Path, env: dict[str, str], **runner_options: Any) -> Run:
    """Run the playbook at ``path`` from the repository root with these environment variables
    (over ansible.cfg, the venv's PATH and no colour); ``runner_options`` go to
    ``ansible_runner.run`` (inventory, extravars, cmdline, timeout ...)."""
    return _run(extra_env=env, playbook=str(path), **runner_options)


def lab_up(inventory: Path, **extravars: Any) -> Run:
    return playbook("lab-up.yml", inventory, **extravars)


def lab_down(**extravars: Any) -> Run:
    return playbook("lab-down.yml", None, **extravars)


def adhoc(inventory: Path, pattern: str, module: str, args: str = "") -> Run:
    """An ad-hoc module run on lab nodes, as `ansible -i INVENTORY PATTERN -m MODULE -a ARGS`."""
    return _run(inventory=str(inventory), host_pattern=pattern, module=module, module_args=args)


def task_seconds(event_data: dict[str, Any]) -> float:
    """Duration of one result event (ansible-runner records start and end)."""
    if "duration" in event_data:
        return float(event_data["duration"])
    start = datetime.fromisoformat(event_data["start"])
    end = datetime.fromisoformat(event_data["end"])
    return (end - start).total_seconds()


def write_inventory(path: Path, nodes: dict[str, str], groups: dict[str, list[str]]) -> Path:
    """A lab inventory like inventory/lab.yml, with these node names and addresses."""
    inventory = {
        "all": {
            "children": {
                "lab": {
                    "vars": {
                        "ansible_user": "root",
                        "ansible_ssh_private_key_file": str(SSH_KEY),
                        "ansible_ssh_common_args": (
                            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                            "-o LogLevel=ERROR -o ConnectTimeout=10"
                        ),
                        "ansible_python_interpreter": "/usr/bin/python3",
                    },
                    "hosts": {name: {"ansible_host": address} for name, address in nodes.items()},
                },
                **{group: {"hosts": dict.fromkeys(members)} for group, members in groups.items()},
            }
        }
    }
    path.write_text(json.dumps(inventory, indent=2))  # JSON is YAML
    return path


@dataclass
class HostState:
    """What the lab leaves on this machine, seen with ip, /proc/mounts and /proc."""

    links: list[str]
    bridge_ports: list[str]
    mounts: list[str]
    nspawn_pids: dict[int, str]
    node_dirs: list[str]

    @property
    def bridge(self) -> bool:
        return BRIDGE in self.links


def host_state() -> HostState:
    links_json = subprocess.run(
        ["ip", "-json", "link", "show"], check=True, capture_output=True, text=True
    ).stdout
    links = [link["ifname"] for link in json.loads(links_json)]
    ports: list[str] = []
    if BRIDGE in links:
        ports_json = subprocess.run(
            ["ip", "-json", "link", "show", "master", BRIDGE],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        ports = [link["ifname"] for link in json.loads(ports_json or "[]")]
    mounts = [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if str(NODES_DIR) in line.split()[1]
    ]
    pids: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [arg.decode(errors="replace") for arg in args if arg]
        if (
            words
            and Path(words[0]).name == "systemd-nspawn"
            and any(word.startswith(f"--directory={NODES_DIR}/") for word in words)
        ):
            pids[int(proc.name)] = " ".join(words)
    node_dirs = sorted(p.name for p in NODES_DIR.iterdir()) if NODES_DIR.is_dir() else []
    return HostState(
        links=links, bridge_ports=ports, mounts=mounts, nspawn_pids=pids, node_dirs=node_dirs
    )


def lab_veths(state: HostState) -> list[str]:
    """Host-side veths systemd-nspawn creates for bridged nodes (vb-<name>)."""
    return [link for link in state.links if re.match(r"^vb-", link)]
