"""Network figures on a deployed cloud: port latency, a network with many ports, and the time from
``POST /servers`` to the guest's DHCP lease under TCG.

    python bench/network.py [--cloud cirrus-demo] [--ports 100] [--servers 3]
                            [--image cirrus-tiny] [--flavor m1.tiny] [--skip-servers]
                            [--timeout 180]

Needs a deployed cloud (`make deploy`, or a Molecule scenario left running) whose clouds.yaml entry
is ``--cloud``; prints "skipped" and exits 0 when no network API answers as that cloud. It makes
its own resources, all named ``bench-net-<random>-...``: a "busy" network and an "empty" one, each
with an IPv4 subnet, and a router with an interface on both subnets when the API has the
``router`` extension (the guests' metadata goes through it). Then it prints:

1. ``--ports`` sequential ``POST /v2.0/ports`` on the busy network: p50/p95/max beside the target
   (p50 <= 50 ms; Neutron's published median is about 370 ms); at the end, the ``DELETE`` of each
   of those ports, same figures.
2. The busy network with those ports: the time to create them all, ``GET
   /v2.0/ports?network_id=`` (p50 over 20), and, when servers can be booted, the DHCP lease time
   of servers on the busy network beside servers on the empty one.
3. ``--servers`` servers, one at a time, on the empty network (alternating with as many on the
   busy one): from the ``POST /servers`` (``networks: [{uuid}]``) to ``ACTIVE`` (polled every
   0.1 s) and to the console line ``CIRRUS-GUEST-NET eth0 ip=<address>`` that the guest image's
   DHCP hook prints (``os-getConsoleOutput`` polled every 0.5 s, so a lease figure is late by up
   to 0.5 s); p50/max beside the target (<= 15 s). The leased address must be the one of the
   server's port.

Servers are skipped (``--skip-servers``, or no compute API, image or flavor: said so) and the
port figures still printed. Each server is deleted once measured; everything made is deleted in a
``finally``, also on Ctrl-C or SIGTERM (a second Ctrl-C is ignored while cleaning up), including
what a create cut short made (found by the name prefix). ``--timeout`` bounds each server. Figures
only: the exit status is 1 on a functional error (an unexpected answer, a server in ERROR or
without a lease, a wrong address, something left behind), never because of a time.
"""

from __future__ import annotations

import argparse
import random
import re
import secrets
import signal
import statistics
import sys
import time
from typing import Any

PORT_TARGET = "target p50 <= 50 ms (Neutron's published median is about 370 ms)"
LEASE_TARGET = "target <= 15 s"
LIST_RUNS = 20
STATUS_POLL = 0.1
CONSOLE_POLL = 0.5
NET_LINE = re.compile(r"CIRRUS-GUEST-NET eth0 ip=(\S+)")
NET_FAILED = re.compile(r"CIRRUS-GUEST-NET eth0 dhcp=failed")


class BenchError(RuntimeError):
    """A functional failure: the benchmark exits 1."""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def fmt_ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    ms = [value * 1000 for value in values]
    return (
        f"p50 {statistics.median(ms):.1f} ms, p95 {pct(ms, 0.95):.1f} ms, "
        f"max {max(ms):.1f} ms (n={len(ms)})"
    )


def fmt_s(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {statistics.median(values):.2f} s, max {max(values):.2f} s (n={len(values)})"


def expect(response: Any, status: int | tuple[int, ...], what: str) -> Any:
    wanted = status if isinstance(status, tuple) else (status,)
    if response.status_code not in wanted:
        raise BenchError(f"{what}: {response.status_code} {response.text[:500]}")
    return response.json() if response.content else None


def prefix_for(addresses: int) -> int:
    """The longest IPv4 prefix whose subnet has ``addresses`` usable host addresses to spare."""
    prefix = 24
    while prefix > 16 and 2 ** (32 - prefix) - 3 < addresses:
        prefix -= 1
    return prefix


class NetworkBench:
    def __init__(self, cloud: str, prefix: str) -> None:
        import openstack

        self.conn = openstack.connect(cloud=cloud)
        self.network = self.conn.network
        self.compute = self.conn.compute
        self.prefix = prefix
        # What this run made, deleted in reverse by cleanup().
        self.networks: list[str] = []
        self.ports: list[str] = []
        self.routers: list[str] = []
        self.interfaces: list[tuple[str, str]] = []
        self.servers: list[str] = []

    # -- network resources ---------------------------------------------------------------------

    def create_network(self, label: str, cidr: str) -> tuple[str, str]:
        body = {"network": {"name": f"{self.prefix}-{label}"}}
        net = expect(self.network.post("/networks", json=body), 201, "POST /networks")["network"]
        self.networks.append(net["id"])
        body = {
            "subnet": {
                "name": f"{self.prefix}-{label}",
                "network_id": net["id"],
                "ip_version": 4,
                "cidr": cidr,
            }
        }
        subnet = expect(self.network.post("/subnets", json=body), 201, "POST /subnets")["subnet"]
        return net["id"], subnet["id"]

    def has_routers(self) -> bool:
        extensions = expect(self.network.get("/extensions"), 200, "GET /extensions")
        return any(ext.get("alias") == "router" for ext in extensions["extensions"])

    def create_router(self, subnet_ids: list[str]) -> str:
        body = {"router": {"name": f"{self.prefix}-router"}}
        router = expect(self.network.post("/routers", json=body), 201, "POST /routers")["router"]
        self.routers.append(router["id"])
        for subnet_id in subnet_ids:
            expect(
                self.network.put(
                    f"/routers/{router['id']}/add_router_interface", json={"subnet_id": subnet_id}
                ),
                200,
                "PUT add_router_interface",
            )
            self.interfaces.append((router["id"], subnet_id))
        return str(router["id"])

    def create_port(self, network_id: str, index: int) -> float:
        body = {"port": {"network_id": network_id, "name": f"{self.prefix}-port-{index}"}}
        started = time.perf_counter()
        response = self.network.post("/ports", json=body)
        elapsed = time.perf_counter() - started
        port = expect(response, 201, "POST /ports")["port"]
        self.ports.append(port["id"])
        if not port.get("fixed_ips"):
            raise BenchError(f"port {port['id']} has no fixed IP")
        return elapsed

    def delete_port(self, port_id: str) -> float:
        started = time.perf_counter()
        response = self.network.delete(f"/ports/{port_id}")
        elapsed = time.perf_counter() - started
        expect(response, 204, f"DELETE /ports/{port_id}")
        self.ports.remove(port_id)
        return elapsed

    def list_ports(self, network_id: str) -> tuple[float, int]:
        started = time.perf_counter()
        response = self.network.get("/ports", params={"network_id": network_id})
        elapsed = time.perf_counter() - started
        ports = expect(response, 200, "GET /ports?network_id=")["ports"]
        return elapsed, len(ports)

    # -- servers -------------------------------------------------------------------------------

    def server_refs(self, image: str, flavor: str) -> tuple[str, str] | str:
        """(image id, flavor id), or why servers cannot be booted."""
        try:
            found_image = self.conn.image.find_image(image, ignore_missing=True)
            found_flavor = self.compute.find_flavor(flavor, ignore_missing=True)
        except Exception as exc:  # noqa: BLE001 - no compute or image API: no servers
            return f"no compute or image API ({exc})"
        if found_image is None:
            return f"no image {image!r}"
        if found_flavor is None:
            return f"no flavor {flavor!r}"
        return str(found_image.id), str(found_flavor.id)

    def boot(
        self, name: str, network_id: str, image_id: str, flavor_id: str, timeout: float
    ) -> tuple[float, float, str]:
        """One server on the network: (seconds to ACTIVE, seconds to the lease line, address)."""
        body = {
            "server": {
                "name": f"{self.prefix}-{name}",
                "imageRef": image_id,
                "flavorRef": flavor_id,
                "networks": [{"uuid": network_id}],
            }
        }
        started = time.perf_counter()
        response = self.compute.post("/servers", json=body)
        server_id = expect(response, 202, "POST /servers")["server"]["id"]
        self.servers.append(server_id)
        active: float | None = None
        lease: float | None = None
        address = ""
        last_console = float("-inf")
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if active is None:
                server = expect(
                    self.compute.get(f"/servers/{server_id}"), 200, "GET /servers/{id}"
                )["server"]
                if server["status"] == "ACTIVE":
                    active = time.perf_counter() - started
                elif server["status"] == "ERROR":
                    raise BenchError(f"server {server_id} ERROR: {server.get('fault')}")
            if time.perf_counter() - last_console >= CONSOLE_POLL:
                last_console = time.perf_counter()
                response = self.compute.post(
                    f"/servers/{server_id}/action", json={"os-getConsoleOutput": {}}
                )
                # Before the guest runs the API may answer 409: keep polling.
                output = (response.json().get("output") or "") if response.ok else ""
                found = NET_LINE.search(output)
                if found:
                    lease = time.perf_counter() - started
                    address = found.group(1)
                    if active is None:
                        active = lease
                    break
                if NET_FAILED.search(output):
                    raise BenchError(f"server {server_id}: the guest's DHCP failed")
            time.sleep(STATUS_POLL if active is None else CONSOLE_POLL / 5)
        if active is None:
            raise BenchError(f"server {server_id} not ACTIVE after {timeout:g} s")
        if lease is None:
            raise BenchError(f"server {server_id}: no CIRRUS-GUEST-NET line after {timeout:g} s")
        ports = expect(
            self.network.get("/ports", params={"device_id": server_id}), 200, "GET /ports"
        )["ports"]
        fixed = {ip["ip_address"] for port in ports for ip in port.get("fixed_ips", [])}
        if address not in fixed:
            raise BenchError(
                f"server {server_id}: the guest leased {address}, its ports have {sorted(fixed)}"
            )
        return active, lease, address

    def delete_servers(self, timeout: float = 120.0) -> None:
        for server_id in self.servers:
            self.compute.delete(f"/servers/{server_id}")
        deadline = time.monotonic() + timeout
        for server_id in list(self.servers):
            while time.monotonic() < deadline:
                if self.compute.get(f"/servers/{server_id}").status_code == 404:
                    self.servers.remove(server_id)
                    break
                time.sleep(0.2)

    # -- cleanup -------------------------------------------------------------------------------

    def adopt(self) -> None:
        """Add what carries this run's prefix but whose create answered no id (a request cut
        short by Ctrl-C can still have made its resource)."""
        mine = f"{self.prefix}-"
        lists: list[tuple[Any, str, str, list[str]]] = [
            (self.compute, "/servers", "servers", self.servers),
            (self.network, "/ports", "ports", self.ports),
            (self.network, "/routers", "routers", self.routers),
            (self.network, "/networks", "networks", self.networks),
        ]
        for proxy, path, key, known in lists:
            try:
                response = proxy.get(path)
                found = response.json()[key] if response.status_code == 200 else []
            except Exception:  # noqa: BLE001, S112 - the ids already known are still deleted
                continue
            for item in found:
                if str(item.get("name", "")).startswith(mine) and item["id"] not in known:
                    known.append(item["id"])

    def cleanup(self) -> list[str]:
        """Delete everything this run made; the list of what is left (empty: all gone)."""
        left: list[str] = []
        self.adopt()
        try:
            self.delete_servers()
        except Exception as exc:  # noqa: BLE001 - go on with the rest
            print(f"  cleanup: servers: {exc}")
        left += [f"server {server_id}" for server_id in self.servers]
        for port_id in list(self.ports):
            response = self.network.delete(f"/ports/{port_id}")
            if response.status_code in (204, 404):
                self.ports.remove(port_id)
        left += [f"port {port_id}" for port_id in self.ports]
        for router_id, subnet_id in list(self.interfaces):
            response = self.network.put(
                f"/routers/{router_id}/remove_router_interface", json={"subnet_id": subnet_id}
            )
            if response.status_code in (200, 404):
                self.interfaces.remove((router_id, subnet_id))
        for router_id in list(self.routers):
            # A router adopted by name: its interfaces are not known; find them by their ports.
            response = self.network.get(
                "/ports",
                params={"device_id": router_id, "device_owner": "network:router_interface"},
            )
            for port in response.json().get("ports", []) if response.status_code == 200 else []:
                self.network.put(
                    f"/routers/{router_id}/remove_router_interface", json={"port_id": port["id"]}
                )
            if self.network.delete(f"/routers/{router_id}").status_code in (204, 404):
                self.routers.remove(router_id)
        left += [f"router {router_id}" for router_id in self.routers]
        # A deleted server's port may outlive it for a moment: retry NetworkInUse for a while.
        deadline = time.monotonic() + 60
        for network_id in list(self.networks):
            while True:
                status = self.network.delete(f"/networks/{network_id}").status_code
                if status in (204, 404):
                    self.networks.remove(network_id)
                    break
                if status != 409 or time.monotonic() > deadline:
                    break
                time.sleep(1)
        left += [f"network {network_id}" for network_id in self.networks]
        return left


def bench(args: argparse.Namespace, run: NetworkBench) -> None:
    octet = random.randint(100, 253)
    busy_cidr = f"10.{octet}.0.0/{prefix_for(args.ports + 2 * args.servers + 10)}"
    empty_cidr = f"10.{octet + 1}.0.0/24"
    print(f"resources: {run.prefix}-* (busy network {busy_cidr}, empty network {empty_cidr})")
    busy, busy_subnet = run.create_network("busy", busy_cidr)
    empty, empty_subnet = run.create_network("empty", empty_cidr)
    if run.has_routers():
        run.create_router([busy_subnet, empty_subnet])
        print("router: one interface on each subnet")
    else:
        print("router: none (the network API has no router extension)")

    print(f"\n1. {args.ports} ports, one at a time, on the busy network")
    began = time.perf_counter()
    creates = [run.create_port(busy, index) for index in range(args.ports)]
    create_all = time.perf_counter() - began
    print(f"   POST /v2.0/ports:   {fmt_ms(creates)}; {PORT_TARGET}")

    print(f"\n2. the busy network with {args.ports} ports")
    print(
        f"   creating the {args.ports} ports: {create_all:.2f} s "
        f"({args.ports / create_all:.0f} ports/s)"
    )
    lists: list[float] = []
    count = 0
    for _ in range(LIST_RUNS):
        elapsed, count = run.list_ports(busy)
        lists.append(elapsed)
    if count < args.ports:
        raise BenchError(f"GET /ports?network_id= shows {count} ports, {args.ports} were made")
    print(f"   GET /v2.0/ports?network_id= ({count} ports): {fmt_ms(lists)}")

    refs: tuple[str, str] | str = "--skip-servers"
    if not args.skip_servers and args.servers > 0:
        refs = run.server_refs(args.image, args.flavor)
    if isinstance(refs, str):
        print(f"   DHCP lease, busy vs empty network: skipped ({refs})")
        print(f"\n3. server create to DHCP lease: skipped ({refs})")
    else:
        image_id, flavor_id = refs
        results: dict[str, list[tuple[float, float]]] = {"empty": [], "busy": []}
        for index in range(args.servers):
            for label, network_id in (("empty", empty), ("busy", busy)):
                active, lease, address = run.boot(
                    f"{label}-{index}", network_id, image_id, flavor_id, args.timeout
                )
                results[label].append((active, lease))
                print(
                    f"   server {index + 1}/{args.servers} on the {label} network: "
                    f"ACTIVE {active:.2f} s, lease {lease:.2f} s ({address})"
                )
                run.delete_servers()
        empty_lease = [lease for _, lease in results["empty"]]
        busy_lease = [lease for _, lease in results["busy"]]
        print(
            f"   DHCP lease on the busy network:  {fmt_s(busy_lease)}\n"
            f"   DHCP lease on the empty network: {fmt_s(empty_lease)}"
        )
        print(f"\n3. server create to DHCP lease (empty network, TCG), {args.servers} servers")
        print(f"   POST /servers to ACTIVE:           {fmt_s([a for a, _ in results['empty']])}")
        print(f"   POST /servers to CIRRUS-GUEST-NET: {fmt_s(empty_lease)}; {LEASE_TARGET}")

    print(f"\n1. (continued) the {args.ports} ports deleted, one at a time")
    deletes = [run.delete_port(port_id) for port_id in list(run.ports)]
    print(f"   DELETE /v2.0/ports/{{id}}: {fmt_ms(deletes)}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Network API and DHCP figures on a deployed cloud")
    parser.add_argument("--cloud", default="cirrus-demo")
    parser.add_argument("--ports", type=int, default=100)
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--image", default="cirrus-tiny")
    parser.add_argument("--flavor", default="m1.tiny")
    parser.add_argument("--skip-servers", action="store_true")
    parser.add_argument("--timeout", type=float, default=180.0, help="per server, seconds")
    args = parser.parse_args()
    if args.ports < 1:
        parser.error("--ports must be at least 1")
    try:
        run = NetworkBench(args.cloud, f"bench-net-{secrets.token_hex(3)}")
        if run.network.get("/networks").status_code != 200:
            raise RuntimeError("GET /v2.0/networks did not answer 200")
    except Exception as exc:  # noqa: BLE001 - any failure means there is no cloud to measure
        print(f"skipped: no network API answers as {args.cloud!r} ({exc}); run `make deploy`")
        return 0

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    status = 0
    try:
        bench(args, run)
    except BenchError as exc:
        print(f"error: {exc}")
        status = 1
    except KeyboardInterrupt:
        print("\ninterrupted")
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        left = run.cleanup()
        if left:
            print(f"error: left behind: {', '.join(left)}")
            status = status or 1
        else:
            print(f"cleanup: everything named {run.prefix}-* is deleted")
    return status


if __name__ == "__main__":
    sys.exit(main())
