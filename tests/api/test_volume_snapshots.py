"""Snapshots and copies against the real stack: snapshot create (force for in-use), list, show,
update, metadata, delete; volumes from a snapshot and from another volume (data copied by the
agent, sizes checked); delete refused while snapshots exist, and ``cascade=true``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api import volume_env
from tests.api.volume_env import VolumeEnv, assert_error, unique

pytestmark = [pytest.mark.mariadb, pytest.mark.rabbitmq]


@pytest.fixture(scope="module")
def env(volume_server: Any, identity_server: Any) -> Iterator[VolumeEnv]:
    yield from volume_env.env_fixture(volume_server, identity_server)


def _file_of(env: VolumeEnv, volume_id: str) -> Any:
    return next(p for p in env.server.agent_volumes_dir.iterdir() if volume_id in p.name)


def test_snapshot_life_cycle_and_copies(env: VolumeEnv) -> None:
    volume = env.create_volume(size=1)
    vid = volume["id"]
    # Some data, to see it copied.
    with _file_of(env, vid).open("r+b") as handle:
        handle.write(b"cirrus-data")

    name = unique("snap")
    snap = env.create_snapshot(vid, name=name, description="d", metadata={"m": "1"})
    assert snap["volume_id"] == vid
    assert snap["size"] == 1
    assert snap["name"] == name
    assert snap["metadata"] == {"m": "1"}
    assert snap["os-extended-snapshot-attributes:project_id"] == env.project_id()

    listed = env.get("/snapshots/detail").json()["snapshots"]
    assert snap["id"] in [s["id"] for s in listed]
    assert [s["id"] for s in env.get(f"/snapshots?name={name}").json()["snapshots"]] == [snap["id"]]
    renamed = env.put(f"/snapshots/{snap['id']}", {"snapshot": {"name": f"{name}-2"}})
    assert renamed.json()["snapshot"]["name"] == f"{name}-2"
    meta = env.post(f"/snapshots/{snap['id']}/metadata", {"metadata": {"x": "y"}})
    assert meta.json() == {"metadata": {"m": "1", "x": "y"}}
    assert_error(env.get(f"/snapshots/{snap['id']}", "b"), 404)

    # From the snapshot: at least its size.
    assert_error(
        env.post("/volumes", {"volume": {"size": 0, "snapshot_id": snap["id"]}}), 400, "size"
    )
    from_snap = env.create_volume(snapshot_id=snap["id"], size=2)
    assert from_snap["size"] == 2
    assert from_snap["snapshot_id"] == snap["id"]
    with _file_of(env, from_snap["id"]).open("rb") as handle:
        assert handle.read(11) == b"cirrus-data"
    default_size = env.create_volume(snapshot_id=snap["id"], size=None)
    assert default_size["size"] == 1

    # From another volume.
    clone = env.create_volume(source_volid=vid, size=None)
    assert clone["source_volid"] == vid
    with _file_of(env, clone["id"]).open("rb") as handle:
        assert handle.read(11) == b"cirrus-data"
    assert_error(
        env.post("/volumes", {"volume": {"source_volid": str(uuid.uuid4()), "size": 1}}), 404
    )

    # A volume with snapshots is not deleted without cascade.
    assert_error(env.delete(f"/volumes/{vid}"), 400, "snapshot", "cascade=true")
    resp = env.delete(f"/snapshots/{snap['id']}")
    assert resp.status_code == 202
    env.wait_gone(f"/snapshots/{snap['id']}")
    for ident in (vid, from_snap["id"], default_size["id"], clone["id"]):
        env.delete_volume(ident)


def test_in_use_needs_force_and_cascade_deletes_snapshots(env: VolumeEnv) -> None:
    volume = env.create_volume()
    vid = volume["id"]
    env.action(vid, "os-attach", {"instance_uuid": str(uuid.uuid4()), "mountpoint": "/dev/vdb"})

    assert_error(
        env.post("/snapshots", {"snapshot": {"volume_id": vid}}), 400, "in-use", "force=true"
    )
    snap = env.create_snapshot(vid, force=True)
    assert snap["status"] == "available"
    env.action(vid, "os-detach", {})

    other = env.create_snapshot(vid)
    resp = env.delete(f"/volumes/{vid}?cascade=true")
    assert resp.status_code == 202, resp.text
    env.wait_gone(f"/volumes/{vid}")
    for ident in (snap["id"], other["id"]):
        env.wait_gone(f"/snapshots/{ident}")
    assert_error(env.post("/snapshots", {"snapshot": {}}), 400, "volume_id")
