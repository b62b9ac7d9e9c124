#!/usr/bin/env python3
"""Write a lab inventory with so many nodes of each group.

    make-inventory.py controller=1 compute=3 storage=1 [network=1] [--output .lab/lab-custom.yml]

Nodes are named lab-ctl1, lab-net1, lab-cmp1, lab-sto1, ... and numbered on the lab network from
10.231.0.11 on, in that group order. With no network node, the controllers are the network
nodes (as in inventory/lab-multinode.yml). The result has the same shape as inventory/lab.yml:
the connection settings on a group `lab`, the lab key found relative to the inventory's
directory. Then: ansible-playbook -i .lab/lab-custom.yml playbooks/lab-up.yml.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
KEY = REPO / ".lab" / "ssh" / "id_ed25519"
GROUPS = {"controller": "ctl", "network": "net", "compute": "cmp", "storage": "sto"}
NETWORK = "10.231.0"
FIRST_HOST = 11
LAST_HOST = 254
SSH_ARGS = (
    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null"
    " -o LogLevel=ERROR -o ConnectTimeout=10"
)


def count(text: str) -> tuple[str, int]:
    group, sep, number = text.partition("=")
    if not sep or group not in GROUPS or not number.isdigit():
        raise argparse.ArgumentTypeError(f"expected GROUP=N with GROUP in {', '.join(GROUPS)}")
    return group, int(number)


def inventory(counts: dict[str, int], output: Path) -> dict[str, Any]:
    members: dict[str, list[str]] = {group: [] for group in GROUPS}
    hosts: dict[str, dict[str, str]] = {}
    address = FIRST_HOST
    for group, short in GROUPS.items():
        for index in range(1, counts.get(group, 0) + 1):
            if address > LAST_HOST:
                raise SystemExit(f"too many nodes: the lab network ends at {NETWORK}.{LAST_HOST}")
            name = f"lab-{short}{index}"
            hosts[name] = {"ansible_host": f"{NETWORK}.{address}"}
            members[group].append(name)
            address += 1
    if not hosts:
        raise SystemExit("no nodes asked for")
    if not members["network"]:
        members["network"] = list(members["controller"])
    key = os.path.relpath(KEY, output.resolve().parent)
    return {
        "all": {
            "children": {
                "lab": {
                    "vars": {
                        "ansible_user": "root",
                        "ansible_ssh_private_key_file": "{{ inventory_dir }}/" + key,
                        "ansible_ssh_common_args": SSH_ARGS,
                        "ansible_python_interpreter": "/usr/bin/python3",
                        "cirrus_management_address": "{{ ansible_host }}",
                    },
                    "hosts": hosts,
                },
                **{
                    group: {"hosts": dict.fromkeys(names)}
                    for group, names in members.items()
                    if names
                },
            }
        }
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", nargs="+", type=count, metavar="GROUP=N")
    parser.add_argument("--output", type=Path, default=REPO / ".lab" / "lab-custom.yml")
    args = parser.parse_args(argv)
    data = inventory(dict(args.counts), args.output)
    text = "---\n# Written by lab/make-inventory.py " + " ".join(
        f"{group}={number}" for group, number in args.counts
    )
    text += "\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text.replace(": null\n", ":\n"))
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
