"""The lab as a user sees it: lab-up, reach the nodes, lab-up again, lab-down, lab-down again.

Runs playbooks/lab-up.yml and lab-down.yml through ansible-runner with a two-node inventory
(a controller and a compute), as root on a machine that can run systemd-nspawn. The first run
builds the cached base when it is missing (a minute or two). Whatever happens, the module's
fixture tears the lab down at the end. Skipped when a lab is already running, so that the test
never removes someone's nodes.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.slow]

if sys.platform != "linux" or os.geteuid() != 0:
    pytest.skip("the lab needs root on Linux", allow_module_level=True)

from tests.lab import labctl  # noqa: E402  (imports ansible_runner)

NODES = {"labt-ctl": "10.231.0.41", "labt-cmp": "10.231.0.42"}
GROUPS = {
    "controller": ["labt-ctl"],
    "network": ["labt-ctl"],
    "compute": ["labt-cmp"],
    "storage": ["labt-ctl"],
}
PUBLIC_ADDRESS = "1.1.1.1"  # any address outside the lab


def assert_ok(run: labctl.Run, what: str) -> None:
    assert run.status == "successful" and run.rc == 0, (
        f"{what} failed ({run.status}, rc={run.rc}, failed hosts {run.failed_hosts()}):\n"
        f"{run.stdout[-4000:]}"
    )


def assert_lab_gone(state: labctl.HostState) -> None:
    assert state.nspawn_pids == {}, f"nspawn processes left: {state.nspawn_pids}"
    assert state.mounts == [], f"mounts left: {state.mounts}"
    assert not state.bridge, f"bridge {labctl.BRIDGE} left"
    assert labctl.lab_veths(state) == [], f"veths left: {labctl.lab_veths(state)}"
    assert state.node_dirs == [], f"node directories left: {state.node_dirs}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, labctl.Run]]:
    before = labctl.host_state()
    if before.node_dirs or before.nspawn_pids or before.bridge:
        pytest.skip(f"a lab is already running ({before.node_dirs}); run `make lab-down` first")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is missing")
    inventory = labctl.write_inventory(
        tmp_path_factory.mktemp("lab") / "inventory.yml", NODES, GROUPS
    )
    try:
        up = labctl.lab_up(inventory)
        yield inventory, up
    finally:
        labctl.lab_down()


def test_lab_up_boots_every_inventory_host(lab: tuple[Path, labctl.Run]) -> None:
    inventory, up = lab
    assert_ok(up, "lab-up")
    started = up.results("Start each node that is not running")
    assert sorted(labctl.loop_item(r)["key"] for r in started) == sorted(NODES)
    assert all(r["res"]["stdout"] == "started" for r in started)

    state = labctl.host_state()
    assert state.bridge
    assert len(state.nspawn_pids) == len(NODES)
    assert sorted(state.node_dirs) == sorted(NODES)
    assert len(state.bridge_ports) == len(NODES)


def test_ansible_reaches_every_node(lab: tuple[Path, labctl.Run]) -> None:
    inventory, _ = lab
    ping = labctl.adhoc(inventory, "all", "ping")
    assert_ok(ping, "ansible all -m ping")
    pongs = {r["host"]: r["res"]["ping"] for r in ping.results("ping")}
    assert pongs == dict.fromkeys(NODES, "pong")


def test_nodes_run_systemd_with_their_names_and_addresses(lab: tuple[Path, labctl.Run]) -> None:
    inventory, _ = lab
    facts = labctl.adhoc(inventory, "all", "command", "systemctl is-system-running --wait")
    assert_ok(facts, "systemctl is-system-running")
    hostnames = labctl.adhoc(inventory, "all", "command", "hostname")
    assert {r["host"]: r["res"]["stdout"] for r in hostnames.results("command")} == {
        name: name for name in NODES
    }
    addresses = labctl.adhoc(inventory, "all", "command", "ip -4 -o address show dev host0")
    for result in addresses.results("command"):
        assert f"inet {NODES[result['host']]}/24" in result["res"]["stdout"]


def test_nodes_reach_the_host_and_each_other(lab: tuple[Path, labctl.Run]) -> None:
    inventory, _ = lab
    to_host = labctl.adhoc(inventory, "all", "command", f"ping -c 1 -W 2 {labctl.HOST_ADDRESS}")
    assert_ok(to_host, "ping the host from every node")
    across = labctl.adhoc(inventory, "labt-cmp", "command", "ping -c 1 -W 2 labt-ctl")
    assert_ok(across, "ping labt-ctl by name from labt-cmp")


def test_nodes_cannot_reach_outside_the_lab(lab: tuple[Path, labctl.Run]) -> None:
    inventory, _ = lab
    routes = labctl.adhoc(inventory, "all", "command", "ip -4 route show")
    for result in routes.results("command"):
        lines = result["res"]["stdout"].splitlines()
        assert lines, "no route at all"
        assert all(line.startswith("10.231.0.0/24 dev host0") for line in lines), lines
    script = (
        "import socket, time\n"
        "s = socket.socket(); s.settimeout(5); t = time.monotonic()\n"
        "try:\n"
        f"    s.connect(('{PUBLIC_ADDRESS}', 443)); print('connected')\n"
        "except OSError as e:\n"
        "    print(type(e).__name__, e.errno, round(time.monotonic() - t, 2))\n"
    )
    outside = labctl.adhoc(inventory, "all", "command", f'python3 -c "{script}"')
    assert_ok(outside, "connect to an outside address")
    for result in outside.results("command"):
        kind, errno, seconds = result["res"]["stdout"].split()
        assert kind != "connected"
        assert int(errno) == 101  # ENETUNREACH: no route at all, fails at once
        assert float(seconds) < 1


def test_lab_up_again_is_harmless(lab: tuple[Path, labctl.Run]) -> None:
    inventory, _ = lab
    pids = labctl.host_state().nspawn_pids
    again = labctl.lab_up(inventory)
    assert_ok(again, "second lab-up")
    assert again.changed() == 0
    assert labctl.host_state().nspawn_pids == pids  # running nodes were left alone


def test_lab_down_leaves_nothing_and_can_run_twice(lab: tuple[Path, labctl.Run]) -> None:
    down = labctl.lab_down()
    assert_ok(down, "lab-down")
    assert_lab_gone(labctl.host_state())
    again = labctl.lab_down()
    assert_ok(again, "second lab-down")
    assert again.changed() == 0
    assert_lab_gone(labctl.host_state())
