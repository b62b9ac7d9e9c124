#!/usr/bin/python
# Copyright: Cirrus contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: a volume of a Cirrus (Cinder v3) cloud, its size and its attachment."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cloud_volume
short_description: Manage a volume of an OpenStack-compatible cloud, its size and its attachment
description:
  - Brings the volume named O(name) of the block storage service (Cinder v3, as Cirrus serves
    it) to O(state). It is created with O(size) GiB when missing, extended when O(size) is larger
    than its size, its O(description) updated, and attached to or detached from servers as
    O(server) and O(attached) say. Only what differs is changed, so that running the task again
    reports no change.
  - Talks to the APIs over plain HTTP (Keystone v3 password login, then the block storage API
    found in the catalog as type C(volumev3) or C(block-storage), and the compute API for
    attachments), so the host it runs on needs Python and PyYAML only, not openstacksdk.
  - The volume is found by its exact name in the project of the credentials; two or more with
    one name fail the task, naming their ids.
  - Every option is checked before the first write (sizes, the server, the volume type, the
    snapshot or image to create from, what cannot change), so that a wrong task changes nothing.
  - Changes are made in this order, so that one task can do what the API allows only in a given
    state. First detach, then extend (the API extends C(available) volumes only), then attach.
version_added: "0.1.0"
author: Cirrus contributors
extends_documentation_fragment:
  - cirrus_cloud
options:
  name:
    description:
      - Name of the volume in the project of the credentials.
    type: str
    required: true
  state:
    description:
      - V(present) the volume exists, with the size, description and attachment given.
      - V(absent) no volume has this name. An attached volume is detached from its servers
        first; a volume with snapshots fails the task before any change, naming them (delete
        them first).
    type: str
    choices: [present, absent]
    default: present
  size:
    description:
      - Size of the volume in GiB, at least 1. Required to create it (unless O(snapshot) gives
        the size).
      - Larger than the volume's size, the volume is extended (detached first when O(attached)
        is V(false); an attached volume cannot be extended and fails the task). Smaller fails
        the task, as a volume never shrinks.
    type: int
  description:
    description:
      - Description of the volume; updated when it differs.
    type: str
  volume_type:
    description:
      - Name or id of the volume type, used when the volume is created (the service's default
        type when left out). A different type on an existing volume fails the task (this
        module does not retype).
    type: str
  availability_zone:
    description:
      - Availability zone of the volume, used when it is created. A different zone on an
        existing volume fails the task.
    type: str
  snapshot:
    description:
      - Name or id of a snapshot to create the volume from (a copy of its data). Used when the
        volume is created; O(size) may be left out (the snapshot's size) or be larger.
      - Mutually exclusive with O(image).
    type: str
  image:
    description:
      - Name or id of an image to create the volume from (its data written into the volume).
        Used when the volume is created.
      - Mutually exclusive with O(snapshot).
    type: str
  server:
    description:
      - Name or id of a server of the project. With O(attached=true) (the default when
        O(server) is given), the volume is attached to it; with O(attached=false), detached
        from it.
      - A volume attached to another server fails the task when it should be attached to this
        one (a volume has one server at a time); detach it first (O(attached=false) without
        O(server)).
    type: str
  attached:
    description:
      - V(true) the volume is attached to O(server) (which is then required).
      - V(false) the volume is not attached to O(server), or, without O(server), to any server.
      - Left out, the attachments are not looked at, unless O(server) is given (then V(true)).
    type: bool
  device:
    description:
      - Device name to ask the compute service for when attaching, for example C(/dev/vdc); the
        next free device by default. Only a hint, as in Nova; an existing attachment on another
        device is not changed.
    type: str
  wait:
    description:
      - Whether to wait until the volume is C(available) after a create or an extend, C(in-use)
        after an attach, detached after a detach, and gone after a delete. A volume that turns
        C(error) fails the task. Without waiting, the next change of the same task waits anyway
        (an extend or an attach needs the volume C(available)).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for each of those.
    type: int
    default: 300
attributes:
  check_mode:
    support: full
    description: Reads the volume, the server, the type and the source, checks every option, and
      reports what would change (RV(actions)) without any write call.
  diff_mode:
    support: none
    description: Not supported.
requirements:
  - PyYAML on the host the module runs on, to read clouds.yaml.
notes:
  - Runs where the client runs, usually the deploy host (C(delegate_to=localhost) or
    C(connection=local)).
  - Attaching goes through the compute API (C(POST /servers/{id}/os-volume_attachments)), which
    answers once the guest has the disk; detaching through C(DELETE) of the same.
seealso:
  - name: openstack.cloud.volume
    description: The collection's module, which needs openstacksdk (attachments are
      openstack.cloud.server_volume's).
    link: https://docs.ansible.com/ansible/latest/collections/openstack/cloud/volume_module.html
"""

EXAMPLES = r"""
- name: A 1 GiB volume attached to server vm1
  cloud_volume:
    cloud: cirrus-demo
    name: data1
    size: 1
    server: vm1
  delegate_to: localhost

- name: Grow it to 2 GiB (detached first, then attached again by the next task)
  cloud_volume:
    cloud: cirrus-demo
    name: data1
    size: 2
    attached: false
  delegate_to: localhost

- name: A volume made from a snapshot, in a given type and zone
  cloud_volume:
    cloud: cirrus-demo
    name: data1-copy
    snapshot: data1-snap
    volume_type: __DEFAULT__
    availability_zone: nova
  delegate_to: localhost

- name: Delete it (detached first when attached)
  cloud_volume:
    cloud: cirrus-demo
    name: data1
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
id:
  description: Id of the volume; for O(state=absent), of the volume deleted, if any.
  returned: when the volume exists or existed (not in check mode when it would be created)
  type: str
  sample: 6b3a9e1c-2d4f-4e6a-8b0c-1d3e5f7a9b2c
volume:
  description: The volume as the API shows it after the task (C(GET /v3/{project}/volumes/{id})).
  returned: with O(state=present), when the volume exists (not in check mode when it would be
    created)
  type: dict
  sample:
    id: 6b3a9e1c-2d4f-4e6a-8b0c-1d3e5f7a9b2c
    name: data1
    size: 1
    status: in-use
    volume_type: __DEFAULT__
    availability_zone: nova
    bootable: "false"
    description: null
    attachments:
      - server_id: 1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b
        attachment_id: 9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d
        device: /dev/vdb
        host_name: cmp1
        volume_id: 6b3a9e1c-2d4f-4e6a-8b0c-1d3e5f7a9b2c
        id: 6b3a9e1c-2d4f-4e6a-8b0c-1d3e5f7a9b2c
server_id:
  description: Id of O(server), when given.
  returned: when O(server) is given
  type: str
  sample: 1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b
actions:
  description: What the task did, or would do in check mode, one sentence each.
  returned: always
  type: list
  elements: str
  sample:
    - create volume 'data1' (1 GiB)
    - attach volume 'data1' to server 'vm1'
"""

import re  # noqa: E402 - Ansible modules put their documentation first

from ansible.module_utils.cirrus_cloud import CirrusModule, versioned_url  # noqa: E402

_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)

#: Statuses a volume passes through on its way to a settled one.
_BUSY = {
    "creating",
    "extending",
    "attaching",
    "detaching",
    "deleting",
    "downloading",
    "uploading",
    "reserved",
    "backing-up",
    "restoring-backup",
    "retyping",
    "maintenance",
}
_ERRORS = {"error", "error_deleting", "error_extending", "error_restoring", "error_managing"}


def _describe(volume: dict) -> str:
    if not volume:
        return "no answer"
    servers = [a.get("server_id") for a in volume.get("attachments") or []]
    attached = f", attached to {', '.join(map(str, servers))}" if servers else ""
    return f"status {volume.get('status')}, size {volume.get('size')} GiB{attached}"


class VolumeModule(CirrusModule):
    """Read the volume, the server and the sources; check every option; then create, detach,
    extend, update and attach only what differs."""

    argument_spec = {
        "name": {"type": "str", "required": True},
        "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        "size": {"type": "int"},
        "description": {"type": "str"},
        "volume_type": {"type": "str"},
        "availability_zone": {"type": "str"},
        "snapshot": {"type": "str"},
        "image": {"type": "str"},
        "server": {"type": "str"},
        "attached": {"type": "bool"},
        "device": {"type": "str"},
    }
    module_kwargs = {
        "supports_check_mode": True,
        "mutually_exclusive": [("snapshot", "image")],
        "required_if": [("attached", True, ("server",))],
    }
    user_agent = "cirrus-ansible cloud_volume"

    def __init__(self) -> None:
        super().__init__()
        self.actions: list[str] = []
        self.url = ""
        self._compute = ""

    # -- helpers -------------------------------------------------------------------------------

    def did(self, action: str) -> None:
        self.actions.append(action)

    def finish(self, **result) -> None:
        self.exit_json(changed=bool(self.actions), actions=self.actions, **result)

    @property
    def label(self) -> str:
        return f"volume '{self.params['name']}'"

    @property
    def compute(self) -> str:
        if not self._compute:
            self._compute = self.session.endpoint("compute")
        return self._compute

    def only(self, kind: str, wanted: str, found: list, fix: str) -> dict | None:
        """The one item of ``found``; two or more fail the task naming their ids."""
        if len(found) > 1:
            ids = sorted(str(item.get("id")) for item in found)
            self.fail_json(
                msg=f"{len(found)} {kind}s are named '{wanted}' (ids {', '.join(ids)}); this "
                f"module needs the name to pick one: {fix}",
                ids=ids,
            )
        return found[0] if found else None

    # -- checks before any call ----------------------------------------------------------------

    def check_options(self) -> None:
        params = self.params
        size = params["size"]
        if size is not None and size < 1:
            self.fail_json(
                msg=f"size is {size}; a volume's size is a whole number of GiB, at least 1"
            )
        if params["state"] == "absent":
            return
        if params["attached"] is not None and not params["attached"] and params["device"]:
            self.fail_json(
                msg="device is for attaching, and attached=false detaches; leave device out"
            )
        if params["device"] and not re.match(r"^/dev/[a-z]+[a-z0-9]*$", params["device"]):
            self.fail_json(
                msg=f"device '{params['device']}' is not a device name; give one such as "
                "/dev/vdc, or leave device out for the next free one"
            )

    def wants_attached(self) -> bool | None:
        """True: attached to `server`; False: not attached (to `server`, or to any); None: not
        looked at."""
        if self.params["attached"] is not None:
            return bool(self.params["attached"])
        return True if self.params["server"] else None

    # -- reading -------------------------------------------------------------------------------

    def find(self) -> dict | None:
        name = self.params["name"]
        volumes = self.session.collect(
            f"{self.url}/volumes/detail",
            "volumes",
            query={"name": name},
            what=f"list the volumes named '{name}'",
        )
        volumes = [v for v in volumes if v.get("name") == name and v.get("status") != "deleted"]
        return self.only(
            "volume",
            name,
            volumes,
            "delete or rename the extra ones (`openstack volume delete ID`, "
            "`openstack volume set --name NEW ID`)",
        )

    def show(self, volume_id: str) -> dict | None:
        response = self.session.call(
            "GET",
            f"{self.url}/volumes/{volume_id}",
            what=f"show {self.label} ({volume_id})",
            allow=(404,),
        )
        if response.status == 404:
            return None
        return response.body["volume"]

    def find_server(self) -> dict | None:
        """The server of `server` (by id, then by exact name), or None when not given."""
        wanted = self.params["server"]
        if not wanted:
            return None
        what = f"look up server '{wanted}'"
        if _UUID.match(wanted):
            response = self.session.call(
                "GET", f"{self.compute}/servers/{wanted}", what=what, allow=(404,)
            )
            if response.status == 200:
                return response.body["server"]
        servers = self.session.collect(
            f"{self.compute}/servers/detail",
            "servers",
            query={"name": f"^{re.escape(wanted)}$"},
            what=what,
        )
        servers = [s for s in servers if s.get("name") == wanted and s.get("status") != "DELETED"]
        server = self.only(
            "server", wanted, servers, "give the server's id in `server` instead of its name"
        )
        if server is None:
            self.fail_json(
                msg=f"server '{wanted}' not found (neither a name nor an id of a server of the "
                "project); `openstack server list` lists them: correct `server`, or create the "
                "server first"
            )
        return server

    def find_source(self, kind: str) -> dict | None:
        """The snapshot or image named (or with the id) given, or None when not given."""
        wanted = self.params[kind]
        if not wanted:
            return None
        what = f"look up {kind} '{wanted}'"
        if kind == "snapshot":
            url, key = f"{self.url}/snapshots", "snapshots"
            listing = f"{url}/detail"
            listing_cmd = "openstack volume snapshot list"
        else:
            url, key = f"{versioned_url(self.session.endpoint('image'), 'v2')}/images", "images"
            listing = url
            listing_cmd = "openstack image list"
        if _UUID.match(wanted):
            response = self.session.call("GET", f"{url}/{wanted}", what=what, allow=(400, 403, 404))
            if response.status == 200:
                body = response.body or {}
                return body.get("snapshot", body) if kind == "snapshot" else body
        found = self.session.collect(listing, key, query={"name": wanted}, what=what)
        found = [item for item in found if item.get("name") == wanted]
        item = self.only(kind, wanted, found, f"give the {kind}'s id in `{kind}` instead")
        if item is None:
            self.fail_json(
                msg=f"{kind} '{wanted}' not found (neither a name nor an id of a {kind} the "
                f"project may use); `{listing_cmd}` lists them: correct `{kind}`"
            )
        return item

    def check_volume_type(self) -> None:
        """A volume type the user may use, when one is given (before creating)."""
        wanted = self.params["volume_type"]
        if not wanted:
            return
        response = self.session.call(
            "GET", f"{self.url}/types", what="list the volume types", allow=(403, 404)
        )
        if response.status != 200:
            return  # the API will say
        types = (response.body or {}).get("volume_types") or []
        if any(wanted in (t.get("name"), t.get("id")) for t in types):
            return
        names = ", ".join(sorted(str(t.get("name")) for t in types)) or "none"
        self.fail_json(
            msg=f"volume_type '{wanted}' is not a volume type of this cloud (it has: {names}); "
            "correct volume_type, or leave it out for the default type"
        )

    # -- waiting -------------------------------------------------------------------------------

    def fail_on_error(self, volume: dict, doing: str) -> None:
        if volume.get("status") not in _ERRORS:
            return
        self.fail_json(
            msg=f"{self.label} ({volume['id']}) turned {volume['status']} while {doing}; the "
            "volume agent's log (`journalctl -u cirrus-volume-agent` on its storage host) says "
            "why. Fix the cause, then delete the volume (state=absent) and run the task again",
            volume=volume,
            id=volume["id"],
            actions=self.actions,
        )

    def wait_until(self, volume: dict, doing: str, done) -> dict:
        """Poll until ``done(volume)`` holds for a volume no task runs on; error fails."""
        seen: dict = {}

        def settled() -> dict | None:
            current = self.show(volume["id"])
            if current is None:
                self.fail_json(
                    msg=f"{self.label} ({volume['id']}) was deleted while {doing}; someone else "
                    "deleted it: run the task again to create it",
                    id=volume["id"],
                    actions=self.actions,
                )
            seen.clear()
            seen.update(current)
            self.fail_on_error(current, doing)
            if current.get("status") in _BUSY:
                return None
            return current if done(current) else None

        return self.wait(
            settled,
            f"{self.label} ({volume['id']}) while {doing}",
            describe=lambda: _describe(seen),
        )

    def settle(self, volume: dict, doing: str) -> dict:
        """The volume once no task runs on it (before acting on it)."""
        if volume.get("status") in _BUSY:
            return self.wait_until(volume, doing, lambda v: True)
        self.fail_on_error(volume, doing)
        return volume

    # -- acting --------------------------------------------------------------------------------

    def create(self, source: dict | None) -> dict | None:
        params = self.params
        name = params["name"]
        size = params["size"]
        if size is None and params["snapshot"]:
            size = int(source.get("size") or 0) or None
        if size is None:
            self.fail_json(
                msg=f"{self.label} does not exist, and creating it needs its size: add size "
                "(GiB) to the task"
            )
        if params["snapshot"] and size < int(source.get("size") or 0):
            self.fail_json(
                msg=f"size is {size} GiB, smaller than snapshot '{params['snapshot']}' "
                f"({source.get('size')} GiB); give size {source.get('size')} or more, or leave "
                "it out"
            )
        body: dict = {"name": name, "size": size}
        for option in ("description", "volume_type", "availability_zone"):
            if params[option] is not None:
                body[option] = params[option]
        origin = ""
        if params["snapshot"]:
            body["snapshot_id"] = source["id"]
            origin = f" from snapshot '{params['snapshot']}'"
        elif params["image"]:
            body["imageRef"] = source["id"]
            origin = f" from image '{params['image']}'"
        self.did(f"create {self.label} ({size} GiB){origin}")
        if self.check_mode:
            return None
        response = self.session.call(
            "POST", f"{self.url}/volumes", {"volume": body}, what=f"create {self.label}"
        )
        volume = response.body["volume"]
        if not params["wait"]:
            return volume
        return self.wait_until(volume, "being created", lambda v: v.get("status") == "available")

    def immutable(self, volume: dict) -> None:
        """Fail when a create-only option differs from the volume's."""
        for option in ("volume_type", "availability_zone"):
            wanted = self.params[option]
            have = volume.get(option)
            if wanted is None or have is None or wanted == have:
                continue
            if option == "volume_type" and wanted == volume.get("volume_type_id"):
                continue
            self.fail_json(
                msg=f"{self.label} ({volume['id']}) has {option} '{have}', the task wants "
                f"'{wanted}'; it is set when the volume is created and this module does not "
                f"change it: give {option} '{have}' (or leave it out), or delete the volume "
                "(state=absent) and run the task again to recreate it",
                volume=volume,
                id=volume["id"],
            )

    def check_size(self, volume: dict) -> None:
        wanted = self.params["size"]
        if wanted is not None and wanted < int(volume.get("size") or 0):
            self.fail_json(
                msg=f"size is {wanted} GiB, and {self.label} ({volume['id']}) already has "
                f"{volume['size']} GiB; a volume cannot shrink: give size {volume['size']} or "
                "more, or leave size out",
                volume=volume,
                id=volume["id"],
            )

    def attachments(self, volume: dict) -> list:
        return [a for a in volume.get("attachments") or [] if a.get("server_id")]

    def server_name(self, server_id: str, server: dict | None) -> str:
        if server is not None and server.get("id") == server_id:
            return f"server '{server.get('name') or server_id}'"
        return f"server {server_id}"

    def detach(self, volume: dict, server_id: str, server: dict | None) -> dict:
        who = self.server_name(server_id, server)
        self.did(f"detach {self.label} from {who}")
        if self.check_mode:
            return volume
        self.session.call(
            "DELETE",
            f"{self.compute}/servers/{server_id}/os-volume_attachments/{volume['id']}",
            what=f"detach {self.label} ({volume['id']}) from {who}",
            allow=(404,),
        )
        if not self.params["wait"]:
            return self.show(volume["id"]) or volume
        return self.wait_until(
            volume,
            f"being detached from {who}",
            lambda v: server_id not in [a.get("server_id") for a in self.attachments(v)],
        )

    def attach(self, volume: dict, server: dict) -> dict:
        who = f"server '{server.get('name') or server['id']}'"
        self.did(f"attach {self.label} to {who}")
        if self.check_mode:
            return volume
        request: dict = {"volumeId": volume["id"]}
        if self.params["device"]:
            request["device"] = self.params["device"]
        self.session.call(
            "POST",
            f"{self.compute}/servers/{server['id']}/os-volume_attachments",
            {"volumeAttachment": request},
            what=f"attach {self.label} ({volume['id']}) to {who}",
        )
        if not self.params["wait"]:
            return self.show(volume["id"]) or volume
        return self.wait_until(
            volume,
            f"being attached to {who}",
            lambda v: (
                v.get("status") == "in-use"
                and server["id"] in [a.get("server_id") for a in self.attachments(v)]
            ),
        )

    def extend(self, volume: dict, size: int) -> dict:
        self.did(f"extend {self.label} from {volume.get('size')} to {size} GiB")
        if self.check_mode:
            return {**volume, "size": size}
        self.session.call(
            "POST",
            f"{self.url}/volumes/{volume['id']}/action",
            {"os-extend": {"new_size": size}},
            what=f"extend {self.label} ({volume['id']}) to {size} GiB",
        )
        if not self.params["wait"]:
            return self.show(volume["id"]) or volume
        extended = self.wait_until(volume, f"being extended to {size} GiB", lambda v: True)
        if int(extended.get("size") or 0) < size:
            self.fail_json(
                msg=f"{self.label} ({volume['id']}) is {extended.get('status')} again but still "
                f"{extended.get('size')} GiB after the extend to {size} GiB: the volume agent "
                "could not grow its file (`journalctl -u cirrus-volume-agent` on its storage host "
                "says why; often a full file system); nothing was lost",
                volume=extended,
                id=volume["id"],
                actions=self.actions,
            )
        return extended

    # -- the states ----------------------------------------------------------------------------

    def present(self, volume: dict | None) -> None:
        params = self.params
        wanted_attached = self.wants_attached()
        # Every lookup first: a wrong option fails before any write.
        server = self.find_server()
        source = None
        if volume is None:
            source = self.find_source("snapshot") or self.find_source("image")
            self.check_volume_type()
        else:
            self.immutable(volume)
            self.check_size(volume)
        attached_to = [a.get("server_id") for a in self.attachments(volume or {})]
        if wanted_attached and server is not None:
            others = [s for s in attached_to if s != server["id"]]
            if others:
                self.fail_json(
                    msg=f"{self.label} ({volume['id']}) is attached to server(s) "
                    f"{', '.join(others)}, and the task wants it on server "
                    f"'{server.get('name') or server['id']}'; a volume has one server at a time: "
                    "detach it first (a task with attached: false and no server), then attach it",
                    volume=volume,
                    id=volume["id"],
                )
            if (
                volume is not None
                and server["id"] not in attached_to
                and volume.get("status") not in ("available", *_BUSY)
            ):
                self.fail_json(
                    msg=f"{self.label} ({volume['id']}) is {volume.get('status')}; only an "
                    "available volume can be attached: wait for its current task, or "
                    "fix its state",
                    volume=volume,
                    id=volume["id"],
                )
        grows = (
            volume is not None
            and params["size"] is not None
            and params["size"] > int(volume.get("size") or 0)
        )
        if grows and wanted_attached is not False and attached_to:
            where = ", ".join(attached_to)
            self.fail_json(
                msg=f"{self.label} ({volume['id']}) is attached to server(s) {where}, and "
                f"extending it to {params['size']} GiB needs it detached (the API extends "
                "available volumes only): add attached: false to this task (the next task "
                "may attach it again), or leave size as it is",
                volume=volume,
                id=volume["id"],
            )

        # Create.
        if volume is None:
            volume = self.create(source)
            if volume is None:  # check mode
                if wanted_attached and server is not None:
                    self.did(
                        f"attach {self.label} to server '{server.get('name') or server['id']}'"
                    )
                self.finish(**({"server_id": server["id"]} if server else {}))
            attached_to = []
        else:
            volume = self.settle(volume, "waiting for its current task")
            attached_to = [a.get("server_id") for a in self.attachments(volume)]

        # Detach.
        if wanted_attached is False:
            targets = [server["id"]] if server is not None else list(attached_to)
            for server_id in targets:
                if server_id in attached_to:
                    volume = self.detach(volume, server_id, server)
            if self.check_mode:
                left = [a for a in self.attachments(volume) if a.get("server_id") not in targets]
                volume = {**volume, "attachments": left}

        # Extend.
        if params["size"] is not None and params["size"] > int(volume.get("size") or 0):
            if not self.check_mode:
                volume = self.settle(volume, "waiting before the extend")
            volume = self.extend(volume, params["size"])

        # Update.
        if params["description"] is not None and volume.get("description") != params["description"]:
            self.did(f"update the description of {self.label}")
            if not self.check_mode:
                response = self.session.call(
                    "PUT",
                    f"{self.url}/volumes/{volume['id']}",
                    {"volume": {"description": params["description"]}},
                    what=f"update {self.label} ({volume['id']})",
                )
                volume = response.body.get("volume") or volume

        # Attach.
        if wanted_attached and server is not None:
            current = [a.get("server_id") for a in self.attachments(volume)]
            if server["id"] not in current:
                if not self.check_mode and volume.get("status") in _BUSY:
                    volume = self.settle(volume, "waiting before the attach")
                volume = self.attach(volume, server)

        if not self.check_mode and self.actions:
            volume = self.show(volume["id"]) or volume
        extra = {"server_id": server["id"]} if server is not None else {}
        self.finish(id=volume["id"], volume=volume, **extra)

    def absent(self, volume: dict | None) -> None:
        if volume is None:
            self.finish()
        snapshots = self.session.collect(
            f"{self.url}/snapshots/detail",
            "snapshots",
            query={"volume_id": volume["id"]},
            what=f"list the snapshots of {self.label}",
        )
        snapshots = [s for s in snapshots if s.get("volume_id") == volume["id"]]
        if snapshots:
            names = ", ".join(f"{s.get('name') or '-'} ({s['id']})" for s in snapshots)
            self.fail_json(
                msg=f"{self.label} ({volume['id']}) has snapshots: {names}; a volume with "
                "snapshots cannot be deleted: delete them first (`openstack volume snapshot "
                "delete ID`), then run the task again",
                id=volume["id"],
            )
        if volume.get("status") == "deleting":
            if not self.check_mode and self.params["wait"]:
                self.wait_gone(volume)
            self.finish(id=volume["id"])
        if not self.check_mode:
            volume = self.settle(volume, "waiting for its current task")
        for server_id in [a.get("server_id") for a in self.attachments(volume)]:
            volume = self.detach(volume, server_id, None)
            if not self.check_mode:
                volume = self.settle(volume, f"being detached from server {server_id}")
        self.did(f"delete {self.label}")
        if self.check_mode:
            self.finish(id=volume["id"])
        self.session.call(
            "DELETE",
            f"{self.url}/volumes/{volume['id']}",
            what=f"delete {self.label} ({volume['id']})",
            allow=(404,),
        )
        if self.params["wait"]:
            self.wait_gone(volume)
        self.finish(id=volume["id"])

    def wait_gone(self, volume: dict) -> None:
        seen: dict = {}

        def gone() -> bool:
            current = self.show(volume["id"])
            if current is None:
                return True
            seen.clear()
            seen.update(current)
            if current.get("status") == "error_deleting":
                self.fail_on_error(current, "being deleted")
            return False

        self.wait(
            gone,
            f"{self.label} ({volume['id']}) to be deleted",
            describe=lambda: _describe(seen),
        )

    def run(self) -> None:
        self.check_options()
        self.url = self.session.endpoint("volumev3", "block-storage").rstrip("/")
        volume = self.find()
        if self.params["state"] == "absent":
            self.absent(volume)
        self.present(volume)


def main() -> None:
    VolumeModule()()


if __name__ == "__main__":
    main()
