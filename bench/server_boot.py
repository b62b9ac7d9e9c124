"""Boot latency through the compute API on a deployed lab, beside the `virsh create` floor.

    python bench/server_boot.py [--cloud cirrus-demo] [--runs 5] [--concurrent 10]
                                [--inventory inventory/lab-two-node.yml]

Needs a deployed cloud (`make deploy`, or Molecule's `compute` scenario left running) whose
clouds.yaml entry is ``--cloud``; prints "skipped" and exits 0 otherwise. Prints:

- one server at a time, ``--runs`` times: from the ``POST /servers`` to the first ``GET`` that
  shows ACTIVE (polled every 20 ms), and to the guest's ``CIRRUS-GUEST-READY`` console line;
- ``--concurrent`` servers created at once: each one's API-to-ACTIVE, and the time until all are
  ACTIVE;
- the floor, on the compute host that ran the first server (over the lab's SSH key): ``virsh
  create`` of that server's own domain XML on a fresh qcow2 overlay of the same cached base, until
  it returns (the domain runs: what ACTIVE means) and until the console line.

Every server it creates is deleted, also when it fails. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
READY = "CIRRUS-GUEST-READY"

# Runs on the compute host with its own python3 (stdlib only): the floor for one domain.
FLOOR_SCRIPT = r"""
import json, re, shutil, subprocess, sys, tempfile, time, uuid
server_uuid, runs = sys.argv[1], int(sys.argv[2])
def run(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
xml = run("virsh", "dumpxml", server_uuid)
instance_dir = re.search(r"file='([^']+)/console.log'", xml).group(1)
info = json.loads(run("qemu-img", "info", "-U", "--output=json", instance_dir + "/disk"))
base = info["backing-filename"]
results = []
for _ in range(runs):
    work = tempfile.mkdtemp(prefix="floor-", dir="/var/lib/cirrus-compute")
    shutil.chown(work, "libvirt-qemu", "libvirt-qemu")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base,
                    work + "/disk"], check=True)
    new = xml.replace(instance_dir, work)
    new_uuid = str(uuid.uuid4())
    new = re.sub(r"<uuid>[^<]*</uuid>", "<uuid>%s</uuid>" % new_uuid, new)
    new = re.sub(r"<entry name='uuid'>[^<]*</entry>",
                 "<entry name='uuid'>%s</entry>" % new_uuid, new)
    new = re.sub(r"<name>[^<]*</name>",
                 "<name>cirrus-floor-%s</name>" % uuid.uuid4().hex[:8], new, 1)
    new = re.sub(r"<entry name='serial'>[^<]*</entry>", "", new)
    # Without Cirrus's metadata the agent ignores the domain (it is not a server's).
    new = re.sub(r"<metadata>.*?</metadata>", "", new, flags=re.S)
    path = work + "/domain.xml"
    with open(path, "w") as handle:
        handle.write(new)
    name = re.search(r"<name>([^<]*)</name>", new).group(1)
    started = time.monotonic()
    done = subprocess.run(["virsh", "create", path], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit("virsh create: " + done.stderr)
    created = time.monotonic() - started
    ready = None
    while time.monotonic() - started < 60:
        try:
            if "CIRRUS-GUEST-READY" in open(work + "/console.log", errors="replace").read():
                ready = time.monotonic() - started
                break
        except OSError:
            pass
        time.sleep(0.02)
    subprocess.run(["virsh", "destroy", name], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    results.append({"create": created, "ready": ready})
print(json.dumps(results))
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {statistics.median(values):.2f} s, p95 {pct(values, 0.95):.2f} s, "
        f"min {min(values):.2f} s, max {max(values):.2f} s (n={len(values)})"
    )


class Cloud:
    def __init__(self, cloud: str) -> None:
        import openstack

        self.conn = openstack.connect(cloud=cloud)
        self.compute = self.conn.compute
        image = self.conn.image.find_image("cirrus-tiny", ignore_missing=False)
        flavor = self.conn.compute.find_flavor("m1.tiny", ignore_missing=False)
        self.image_id, self.flavor_id = image.id, flavor.id

    def create(self, name: str) -> tuple[str, float]:
        body = {"server": {"name": name, "imageRef": self.image_id, "flavorRef": self.flavor_id}}
        started = time.monotonic()
        response = self.compute.post("/servers", json=body)
        if response.status_code != 202:
            raise RuntimeError(f"POST /servers: {response.status_code} {response.text}")
        return response.json()["server"]["id"], started

    def wait_active(self, server_id: str, started: float, timeout: float = 120.0) -> float:
        while time.monotonic() - started < timeout:
            server = self.compute.get(f"/servers/{server_id}").json()["server"]
            if server["status"] == "ACTIVE":
                return time.monotonic() - started
            if server["status"] == "ERROR":
                raise RuntimeError(f"server {server_id} ERROR: {server.get('fault')}")
            time.sleep(0.02)
        raise RuntimeError(f"server {server_id} not ACTIVE after {timeout} s")

    def wait_ready(self, server_id: str, started: float, timeout: float = 120.0) -> float | None:
        body = {"os-getConsoleOutput": {"length": 50}}
        while time.monotonic() - started < timeout:
            response = self.compute.post(f"/servers/{server_id}/action", json=body)
            if READY in response.json().get("output", ""):
                return time.monotonic() - started
            time.sleep(0.1)
        return None

    def delete(self, server_ids: list[str]) -> None:
        for server_id in server_ids:
            self.compute.delete(f"/servers/{server_id}")
        deadline = time.monotonic() + 120
        for server_id in server_ids:
            while time.monotonic() < deadline:
                if self.compute.get(f"/servers/{server_id}").status_code == 404:
                    break
                time.sleep(0.2)


def node_address(inventory: Path, host: str) -> str | None:
    inventory_cmd = [
        str(REPO / ".venv/bin/ansible-inventory"),
        "-i",
        str(inventory),
        "--host",
        host,
    ]
    result = subprocess.run(inventory_cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    address = json.loads(result.stdout).get("ansible_host")
    return str(address) if address else None


def floor(address: str, server_id: str, runs: int) -> list[dict[str, Any]]:
    key = REPO / ".lab/ssh/id_ed25519"
    command = [
        "ssh",
        "-i",
        str(key),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        f"root@{address}",
        "python3",
        "-",
        server_id,
        str(runs),
    ]
    result = subprocess.run(
        command, input=FLOOR_SCRIPT, capture_output=True, text=True, check=False, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"floor on {address}: {result.stderr.strip()[-500:]}")
    return list(json.loads(result.stdout))


def bench(args: argparse.Namespace) -> None:
    cloud = Cloud(args.cloud)
    created: list[str] = []
    try:
        active: list[float] = []
        ready: list[float] = []
        first_id = ""
        for index in range(args.runs):
            server_id, started = cloud.create(f"bench-one-{index}")
            created.append(server_id)
            active.append(cloud.wait_active(server_id, started))
            line = cloud.wait_ready(server_id, started)
            if line is not None:
                ready.append(line)
            if index == 0:
                first_id = server_id
            else:
                cloud.delete([server_id])
                created.remove(server_id)
        print(f"one server, API to ACTIVE:        {fmt(active)}")
        print(f"one server, API to console line:  {fmt(ready)}")

        admin = Cloud(args.admin_cloud)
        host = admin.compute.get(f"/servers/{first_id}").json()["server"]["OS-EXT-SRV-ATTR:host"]
        address = node_address(Path(args.inventory), host)
        floor_active: list[float] = []
        if address is None:
            print(f"floor: skipped (host {host} is not in {args.inventory})")
        else:
            runs = floor(address, first_id, args.runs)
            floor_active = [run["create"] for run in runs]
            floor_ready = [run["ready"] for run in runs if run["ready"] is not None]
            print(f"floor on {host}, virsh create:     {fmt(floor_active)}")
            print(f"floor on {host}, to console line:  {fmt(floor_ready)}")
            if floor_active and active:
                ratio = statistics.median(active) / statistics.median(floor_active)
                print(
                    f"API-to-ACTIVE p50 / virsh create p50: {ratio:.1f}x "
                    "(target <= 2.5x, p50 <= 2 s)"
                )
        cloud.delete(created)
        created.clear()

        results: dict[str, float] = {}
        errors: list[str] = []
        begun = time.monotonic()

        def one(index: int) -> None:
            try:
                server_id, started = cloud.create(f"bench-ten-{index}")
                created.append(server_id)
                results[server_id] = cloud.wait_active(server_id, started)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(str(exc))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(args.concurrent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        everything = time.monotonic() - begun
        print(f"{args.concurrent} at once, API to ACTIVE:  {fmt(list(results.values()))}")
        print(
            f"{args.concurrent} at once, all ACTIVE after {everything:.2f} s "
            f"({len(results)}/{args.concurrent} ACTIVE; target: all within 10 s)"
        )
        for error in errors:
            print(f"  error: {error}")
    finally:
        cloud.delete(created)


def main() -> int:
    parser = argparse.ArgumentParser(description="API-to-ACTIVE boot latency on a deployed lab")
    parser.add_argument("--cloud", default="cirrus-demo")
    parser.add_argument("--admin-cloud", default="cirrus")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=10)
    parser.add_argument("--inventory", default=str(REPO / "inventory/lab-two-node.yml"))
    args = parser.parse_args()
    try:
        import openstack

        openstack.connect(cloud=args.cloud).compute.get("/flavors")
    except Exception as exc:  # noqa: BLE001 - any failure means there is no cloud to measure
        print(f"skipped: no deployed cloud answers as {args.cloud!r} ({exc}); run `make deploy`")
        return 0
    bench(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
