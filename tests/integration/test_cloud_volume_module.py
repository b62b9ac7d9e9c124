"""library/cloud_volume.py run in playbooks against the real volume API.

The ``volume_server`` fixture runs volume-api under gunicorn, cirrus-volume-rpc and a file-backend
volume agent beside identity (the volume API in identity's catalog as ``volumev3`` and
``block-storage``). The tests act as a user: a clouds.yaml with a ``member`` of a fresh project
(``cirrus``), plays on localhost run through ansible-runner from the repository root, and what
the volume API (and the agent's volumes directory) shows afterwards. The play runner is in
``tests/fixtures/ansible_playbook.py``.

Covered: create, a second run without change, extend and description (twice), delete (twice);
check mode writes nothing; a smaller size, a changed availability zone, an unknown type or
snapshot, no size, ``attached`` without ``server``, two volumes with one name, a volume with
snapshots for ``absent`` fail before any write, naming what to fix; a volume from a snapshot takes
its size; the API's quota refusal comes through with its status and message. Attachments go
through the compute API of the ``compute_server`` fixture (fake compute hosts) beside
``volume_server``, each step twice: attach by server id, detach and extend in one task, a larger
size for an attached volume refused before any write, attach by server name, ``absent`` of an
attached volume (detached, then deleted). That test skips if the compute API has no
``os-volume_attachments``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.ansible_playbook import CloudContent, Playbook, cloud_content, wait_status
from tests.fixtures.identity_server import IdentityServer
from tests.fixtures.image_server import IdentityAdmin

pytestmark = [pytest.mark.mariadb, pytest.mark.rabbitmq]


@dataclass
class VolumeContent:
    """A member of a fresh project (clouds.yaml entry ``cirrus``) and its view of the volume API."""

    clouds_file: Path
    project_id: str
    token: str
    volume_url: str
    volumes_dir: Path

    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = requests.request(
            method, f"{self.volume_url}{path}", headers=self.headers(), timeout=30, **kwargs
        )
        assert response.status_code == expect, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def named(self, name: str) -> list[dict[str, Any]]:
        volumes = self.call("GET", "/volumes/detail", 200, params={"name": name})["volumes"]
        return [v for v in volumes if v["name"] == name]

    def create(self, name: str, size: int = 1, **extra: Any) -> dict[str, Any]:
        body = {"volume": {"name": name, "size": size, **extra}}
        volume = self.call("POST", "/volumes", 202, json=body)["volume"]
        return self.wait(volume["id"], "available")

    def wait(self, volume_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        volume: dict[str, Any] = {}
        while time.monotonic() < deadline:
            volume = self.call("GET", f"/volumes/{volume_id}", 200)["volume"]
            if volume["status"] == status:
                return volume
            time.sleep(0.3)
        pytest.fail(f"volume {volume_id} did not reach {status}: {volume.get('status')}")

    def snapshot(self, volume_id: str, name: str) -> dict[str, Any]:
        body = {"snapshot": {"volume_id": volume_id, "name": name}}
        snap = self.call("POST", "/snapshots", 202, json=body)["snapshot"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            snap = self.call("GET", f"/snapshots/{snap['id']}", 200)["snapshot"]
            if snap["status"] == "available":
                return snap
            time.sleep(0.3)
        pytest.fail(f"snapshot {snap['id']} did not become available: {snap['status']}")

    def delete_everything(self) -> None:
        for snap in self.call("GET", "/snapshots", 200)["snapshots"]:
            requests.delete(
                f"{self.volume_url}/snapshots/{snap['id']}", headers=self.headers(), timeout=30
            )
        deadline = time.monotonic() + 60
        while self.call("GET", "/snapshots", 200)["snapshots"] and time.monotonic() < deadline:
            time.sleep(0.3)
        for volume in self.call("GET", "/volumes", 200)["volumes"]:
            requests.delete(
                f"{self.volume_url}/volumes/{volume['id']}", headers=self.headers(), timeout=30
            )


def _volume_content(volume_server: Any, identity: IdentityServer, workdir: Path) -> VolumeContent:
    admin = IdentityAdmin(identity)
    try:
        account = admin.account("volmod", "member")
    finally:
        admin.close()
    entry = identity.cloud(account.username, account.password, account.project)
    clouds_file = identity.clouds_yaml(workdir / "clouds.yaml", {"cirrus": entry})
    token, _ = identity.issue_token(account.username, account.password, account.project)
    return VolumeContent(
        clouds_file=clouds_file,
        project_id=account.project_id,
        token=token,
        volume_url=volume_server.project_url(account.project_id),
        volumes_dir=Path(volume_server.agent_volumes_dir),
    )


@pytest.fixture(scope="module")
def volume_content(
    volume_server: Any, identity_server: IdentityServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VolumeContent]:
    found = _volume_content(volume_server, identity_server, tmp_path_factory.mktemp("cloud-vol"))
    yield found
    found.delete_everything()


@pytest.fixture
def playbook(
    volume_content: VolumeContent, identity_server: IdentityServer, tmp_path: Path
) -> Playbook:
    return Playbook(tmp_path, identity_server.env(volume_content.clouds_file))


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _task(title: str, /, **options: Any) -> dict[str, Any]:
    """A cloud_volume task called ``title``; a failure does not stop the play, the test reads
    it."""
    return {"name": title, "cloud_volume": options, "ignore_errors": True}


def _ok(run: Any, title: str) -> dict[str, Any]:
    result: dict[str, Any] = run.result(title)
    assert not result.get("failed"), run.output()
    return result


def _failed(run: Any, title: str) -> str:
    result = run.result(title)
    assert result.get("failed"), run.output()
    return str(result["msg"])


# -- behaviour ------------------------------------------------------------------------------------


def test_create_extend_and_delete_each_twice(
    volume_content: VolumeContent, playbook: Playbook
) -> None:
    content, name = volume_content, _name("vol")
    create = {"name": "Volume", "cloud_volume": {"name": name, "size": 1, "description": "data"}}
    first = playbook.run([create], name="present.yml")
    assert first.returncode == 0, first.output()
    assert first.recap() == {"ok": 1, "changed": 1, "failed": 0}
    result = first.result("Volume")
    assert result["actions"] == [f"create volume '{name}' (1 GiB)"]
    second = playbook.run([create], name="present.yml")
    assert second.returncode == 0, second.output()
    assert second.recap() == {"ok": 1, "changed": 0, "failed": 0}
    assert second.result("Volume")["actions"] == []

    (volume,) = content.named(name)
    assert volume["id"] == result["id"] == result["volume"]["id"]
    assert volume["status"] == "available" and volume["size"] == 1
    assert volume["description"] == "data"
    assert (content.volumes_dir / f"volume-{volume['id']}").exists()

    for expect_changed in (True, False):
        run = playbook.run([_task("extend", name=name, size=2, description="more data")])
        extended = _ok(run, "extend")
        assert extended["changed"] is expect_changed, run.output()
        if expect_changed:
            assert extended["actions"] == [
                f"extend volume '{name}' from 1 to 2 GiB",
                f"update the description of volume '{name}'",
            ]
        assert extended["volume"]["size"] == 2
    (volume,) = content.named(name)
    assert volume["size"] == 2 and volume["status"] == "available"
    assert volume["description"] == "more data"

    for expect_changed in (True, False):
        run = playbook.run([_task("delete", name=name, state="absent")])
        deleted = _ok(run, "delete")
        assert deleted["changed"] is expect_changed, run.output()
    assert content.named(name) == []
    call = requests.get(
        f"{content.volume_url}/volumes/{volume['id']}", headers=content.headers(), timeout=30
    )
    assert call.status_code == 404


def test_check_mode_reports_without_writing(
    volume_content: VolumeContent, playbook: Playbook
) -> None:
    content, name = volume_content, _name("never")
    run = playbook.run([_task("create", name=name, size=1)], "--check")
    created = _ok(run, "create")
    assert created["changed"] is True
    assert created["actions"] == [f"create volume '{name}' (1 GiB)"]
    assert content.named(name) == []

    existing = content.create(_name("kept"))
    run = playbook.run(
        [
            _task("extend", name=existing["name"], size=3),
            _task("delete", name=existing["name"], state="absent"),
        ],
        "--check",
    )
    assert _ok(run, "extend")["actions"] == [f"extend volume '{existing['name']}' from 1 to 3 GiB"]
    assert _ok(run, "delete")["actions"] == [f"delete volume '{existing['name']}'"]
    (volume,) = content.named(existing["name"])
    assert volume["size"] == 1 and volume["status"] == "available"


def test_failures_before_any_write_name_what_to_fix(
    volume_content: VolumeContent, playbook: Playbook
) -> None:
    content = volume_content
    existing = content.create(_name("have"), size=2)
    twin_name = _name("twin")
    twins = [content.create(twin_name), content.create(twin_name)]
    name = _name("fails")
    run = playbook.run(
        [
            _task("smaller", name=existing["name"], size=1),
            _task("zone", name=existing["name"], availability_zone="elsewhere"),
            _task("zero", name=name, size=0),
            _task("no size", name=name),
            _task("type", name=name, size=1, volume_type="no-such-type"),
            _task("snapshot", name=name, snapshot="no-such-snapshot"),
            _task("twins", name=twin_name, size=5),
            _task("attached without server", name=name, size=1, attached=True),
        ]
    )
    smaller = _failed(run, "smaller")
    assert smaller.startswith(
        f"size is 1 GiB, and volume '{existing['name']}' ({existing['id']}) already has 2 GiB; "
        "a volume cannot shrink"
    )
    zone = _failed(run, "zone")
    assert "availability_zone 'nova', the task wants 'elsewhere'" in zone
    assert "does not change it" in zone
    assert _failed(run, "zero").startswith("size is 0; a volume's size is a whole number of GiB")
    assert _failed(run, "no size") == (
        f"volume '{name}' does not exist, and creating it needs its size: add size (GiB) to the "
        "task"
    )
    volume_type = _failed(run, "type")
    assert volume_type.startswith("volume_type 'no-such-type' is not a volume type of this cloud")
    assert "__DEFAULT__" in volume_type
    snapshot = _failed(run, "snapshot")
    assert snapshot.startswith("snapshot 'no-such-snapshot' not found")
    assert "`openstack volume snapshot list`" in snapshot
    twins_msg = _failed(run, "twins")
    for twin in twins:
        assert twin["id"] in twins_msg
    assert "delete or rename the extra ones" in twins_msg
    assert "server" in _failed(run, "attached without server")

    assert content.named(name) == []
    (volume,) = content.named(existing["name"])
    assert volume["size"] == 2
    assert [v["size"] for v in content.named(twin_name)] == [1, 1]


def test_from_a_snapshot_and_absent_refused_while_it_has_snapshots(
    volume_content: VolumeContent, playbook: Playbook
) -> None:
    content = volume_content
    origin = content.create(_name("origin"), size=2)
    snap = content.snapshot(origin["id"], _name("snap"))
    name = _name("copy")
    run = playbook.run(
        [
            _task("copy", name=name, snapshot=snap["name"]),
            _task("copy again", name=name, snapshot=snap["name"]),
            _task("delete origin", name=origin["name"], state="absent"),
        ]
    )
    copy = _ok(run, "copy")
    assert copy["changed"] is True
    assert copy["actions"] == [f"create volume '{name}' (2 GiB) from snapshot '{snap['name']}'"]
    assert copy["volume"]["size"] == 2
    assert copy["volume"]["snapshot_id"] == snap["id"]
    assert _ok(run, "copy again")["changed"] is False
    refused = _failed(run, "delete origin")
    assert snap["id"] in refused
    assert "delete them first" in refused
    assert content.named(origin["name"])[0]["status"] == "available"


def test_the_api_refusal_comes_through_with_its_status_and_message(
    volume_content: VolumeContent, playbook: Playbook
) -> None:
    content, name = volume_content, _name("huge")
    run = playbook.run([_task("huge", name=name, size=100000)])
    refused = _failed(run, "huge")
    assert refused.startswith(f"create volume '{name}' failed: POST {content.volume_url}/volumes")
    assert "answered 413" in refused
    assert "gigabytes" in refused
    assert content.named(name) == []


# -- attachments (through the compute API) --------------------------------------------------------


@pytest.fixture(scope="module")
def compute_content(
    compute_server: Any,
    volume_server: Any,
    identity_server: IdentityServer,
    image_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> CloudContent:
    """A member of a new project with an image and flavors on the compute fixture; the volume
    API is in the same identity's catalog."""
    return cloud_content(
        compute_server, identity_server, image_server, tmp_path_factory.mktemp("cloud-vol-att")
    )


def test_attach_and_detach_each_twice(
    compute_content: CloudContent,
    volume_server: Any,
    identity_server: IdentityServer,
    tmp_path: Path,
) -> None:
    content = compute_content
    auth = content.account_auth
    token, body = identity_server.issue_token(
        auth["username"], auth["password"], auth["project_name"]
    )
    volume_url = volume_server.project_url(body["project"]["id"])
    headers = {"X-Auth-Token": token}
    server_body = {
        "server": {
            "name": _name("vm"),
            "imageRef": content.image_id,
            "flavorRef": content.flavor_id,
        }
    }
    response = requests.post(
        f"{content.compute_url}/servers", json=server_body, headers=headers, timeout=30
    )
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    wait_status(content, server_id, "ACTIVE")
    probe = requests.get(
        f"{content.compute_url}/servers/{server_id}/os-volume_attachments",
        headers=headers,
        timeout=30,
    )
    if probe.status_code == 404 and "os-volume_attachments" not in probe.text:
        pytest.skip("the compute API has no os-volume_attachments yet")
    playbook = Playbook(tmp_path, identity_server.env(content.clouds_file))
    name = _name("att")
    vm_name = server_body["server"]["name"]
    steps = [
        ("attach", {"size": 1, "server": server_id}, "in-use", 1),
        ("detach and extend", {"size": 2, "attached": False}, "available", 2),
        ("attach by name", {"server": vm_name, "size": 2}, "in-use", 2),
        ("delete while attached", {"state": "absent"}, None, None),
    ]
    for title, options, status, size in steps:
        if title == "delete while attached":
            # Growing an attached volume needs it detached: refused before any write.
            run = playbook.run([_task("grow attached", name=name, size=3, server=vm_name)])
            refused = _failed(run, "grow attached")
            assert "extending it to 3 GiB needs it detached" in refused
            assert "add attached: false to this task" in refused
            (unchanged,) = requests.get(
                f"{volume_url}/volumes/detail", params={"name": name}, headers=headers, timeout=30
            ).json()["volumes"]
            assert unchanged["size"] == 2 and unchanged["status"] == "in-use", unchanged
        for expect_changed in (True, False):
            run = playbook.run([_task(title, name=name, wait=True, timeout=120, **options)])
            result = _ok(run, title)
            assert result["changed"] is expect_changed, (title, run.output())
            if title == "detach and extend" and expect_changed:
                assert result["actions"] == [
                    f"detach volume '{name}' from server {server_id}",
                    f"extend volume '{name}' from 1 to 2 GiB",
                ]
            if title == "delete while attached" and expect_changed:
                assert result["actions"] == [
                    f"detach volume '{name}' from server {server_id}",
                    f"delete volume '{name}'",
                ]
        listed = requests.get(
            f"{volume_url}/volumes/detail", params={"name": name}, headers=headers, timeout=30
        ).json()["volumes"]
        if status is None:
            assert listed == []
            continue
        (volume,) = listed
        assert volume["status"] == status and volume["size"] == size, (title, volume)
        servers = [a["server_id"] for a in volume["attachments"]]
        assert servers == ([server_id] if status == "in-use" else []), (title, volume)
    requests.delete(f"{content.compute_url}/servers/{server_id}", headers=headers, timeout=30)
