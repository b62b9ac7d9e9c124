#!/usr/bin/python
# Copyright: Cirrus contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: create, start, stop, reboot or delete one server of a Cirrus (Nova) cloud."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cloud_server
short_description: Create, start, stop, reboot or delete a server of an OpenStack-compatible cloud
description:
  - Brings the server named O(name) of the compute service (Nova v2.1, as Cirrus serves it) to
    O(state), changing only what differs, so that running the task again reports no change.
  - Talks to the APIs over plain HTTP (Keystone v3 password login, then Nova v2.1 and Glance v2),
    so the host it runs on needs Python and PyYAML only, not openstacksdk.
  - Server names are not unique in Nova; this module finds the server by its exact name in the
    project and fails when two or more servers carry it.
  - The options O(image), O(flavor), O(key_name), O(metadata), O(availability_zone) and
    O(networks) are used when the server is created; an existing server is not compared with
    them, rebuilt or resized.
version_added: "0.1.0"
author: Cirrus contributors
extends_documentation_fragment:
  - cirrus_cloud
options:
  name:
    description:
      - Name of the server in the project of the credentials.
    type: str
    required: true
  state:
    description:
      - V(present) the server exists (created when missing; a stopped server stays stopped).
      - V(started) it exists and is C(ACTIVE) (created or started).
      - V(stopped) it exists and is C(SHUTOFF) (created then stopped, or stopped).
      - V(rebooted) it is rebooted, every time (so it always reports a change); a stopped server
        is started (O(reboot_type=SOFT)) or hard rebooted (O(reboot_type=HARD)); a server this
        task creates is not rebooted again.
      - V(absent) no server has this name (deleted when present).
    type: str
    choices: [present, absent, started, stopped, rebooted]
    default: present
  image:
    description:
      - Name or id of the image to boot from (Glance). Required to create the server.
    type: str
  flavor:
    description:
      - Name or id of the flavor. Required to create the server.
    type: str
  key_name:
    description:
      - Name of a key pair of the user (C(openstack keypair list)) to inject.
    type: str
  metadata:
    description:
      - Metadata key/value pairs of the new server.
    type: dict
  availability_zone:
    description:
      - Availability zone to boot in.
    type: str
  networks:
    description:
      - Passed as it is as the C(networks) of the create request, a list of mappings each with
        C(uuid) (a network id), C(port) (a port id) or C(fixed_ip). Left out of the request when
        not given.
      - Left out, the compute API picks the project's only network, or boots with no NIC when
        there is none (docs/compute.md).
    type: list
    elements: dict
  reboot_type:
    description:
      - How O(state=rebooted) reboots; V(SOFT) asks the guest, V(HARD) resets it.
    type: str
    choices: [SOFT, HARD]
    default: SOFT
  wait:
    description:
      - Whether to wait until the server reaches the state (V(present), V(started), V(rebooted)
        C(ACTIVE); V(stopped) C(SHUTOFF); V(absent) gone). A server that goes C(ERROR) meanwhile
        fails the task with the server's fault message.
      - An action is only sent once a task already under way on the server (build, reboot...) has
        ended, whatever this option says.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait, for each stage, when O(wait=true).
    type: int
    default: 300
attributes:
  check_mode:
    support: full
    description: Reads the server, the flavor and the image, and reports what would change
      without any write call.
  diff_mode:
    support: none
    description: Not supported.
requirements:
  - PyYAML on the host the module runs on, to read clouds.yaml.
notes:
  - Runs where the client runs, usually the deploy host (C(delegate_to=localhost) or
    C(connection=local)).
  - Nova's C(name) filter is a regular expression; the module anchors and escapes the name, then
    keeps exact matches only.
seealso:
  - name: openstack.cloud.server
    description: The collection's module, which needs openstacksdk and updates more attributes.
    link: https://docs.ansible.com/ansible/latest/collections/openstack/cloud/server_module.html
"""

EXAMPLES = r"""
- name: Boot vm1 and wait until it is ACTIVE
  cloud_server:
    cloud: cirrus-demo
    name: vm1
    image: cirrus-tiny
    flavor: m1.tiny
    metadata:
      role: web
  delegate_to: localhost

- name: Stop vm1 (created first when missing)
  cloud_server:
    cloud: cirrus-demo
    name: vm1
    image: cirrus-tiny
    flavor: m1.tiny
    state: stopped
  delegate_to: localhost

- name: Hard reboot vm1
  cloud_server:
    cloud: cirrus-demo
    name: vm1
    state: rebooted
    reboot_type: HARD
  delegate_to: localhost

- name: Delete vm1 with credentials given in the task
  cloud_server:
    auth:
      auth_url: http://10.231.0.11:5000/v3
      username: demo
      password: "{{ demo_password }}"
      project_name: demo
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    name: vm1
    state: absent
  delegate_to: localhost
  no_log: true
"""

RETURN = r"""
id:
  description: Id of the server; for O(state=absent), of the server deleted, if any.
  returned: when the server exists or existed
  type: str
  sample: 6f8b2c1e-4d0a-4c55-9a3e-0f2b7a9d1c44
server:
  description:
    - The server as the compute API shows it (C(GET /v2.1/servers/{id})), after waiting.
    - Absent in check mode when the server would be created, and with O(state=absent).
  returned: when the server exists after the task
  type: dict
  sample:
    id: 6f8b2c1e-4d0a-4c55-9a3e-0f2b7a9d1c44
    name: vm1
    status: ACTIVE
    tenant_id: 0b6e3d5c8a9f4e2b9c1d7a6e5f4b3c2a
    user_id: 7d1e2f3a4b5c4d6e8f9a0b1c2d3e4f5a
    image:
      id: 2c4e6a8b-1d3f-4a5b-8c7d-9e0f1a2b3c4d
    flavor:
      id: m1.tiny
    key_name: null
    metadata:
      role: web
    addresses: {}
    OS-EXT-STS:vm_state: active
    OS-EXT-STS:task_state: null
    OS-EXT-STS:power_state: 1
    OS-EXT-AZ:availability_zone: nova
    created: "2026-05-09T07:35:25Z"
    updated: "2026-05-09T07:35:31Z"
"""

import re  # noqa: E402 - Ansible modules put their documentation first
from urllib.parse import quote  # noqa: E402

from ansible.module_utils.cirrus_cloud import CirrusModule, versioned_url  # noqa: E402

#: The status each state settles on; ``present`` accepts any state but ERROR.
_TARGET = {"started": "ACTIVE", "rebooted": "ACTIVE", "stopped": "SHUTOFF"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def _describe(server: dict) -> str:
    if not server:
        return "no answer"
    task = server.get("OS-EXT-STS:task_state")
    return f"status {server.get('status')}" + (f", task {task}" if task else "")


class ServerModule(CirrusModule):
    """Find the server by name, compare its status with the wanted state, act on the difference."""

    argument_spec = {
        "name": {"type": "str", "required": True},
        "state": {
            "type": "str",
            "default": "present",
            "choices": ["present", "absent", "started", "stopped", "rebooted"],
        },
        "image": {"type": "str"},
        "flavor": {"type": "str"},
        "key_name": {"type": "str", "no_log": False},
        "metadata": {"type": "dict"},
        "availability_zone": {"type": "str"},
        "networks": {"type": "list", "elements": "dict"},
        "reboot_type": {"type": "str", "choices": ["SOFT", "HARD"], "default": "SOFT"},
    }
    module_kwargs = {"supports_check_mode": True}
    user_agent = "cirrus-ansible cloud_server"

    # -- reading -------------------------------------------------------------------------------

    @property
    def compute(self) -> str:
        return self.session.endpoint("compute")

    def find(self) -> dict | None:
        """The one server of the project with exactly this name, or None."""
        name = self.params["name"]
        pattern = f"^{re.escape(name)}$"
        servers = self.session.collect(
            f"{self.compute}/servers/detail",
            "servers",
            query={"name": pattern},
            what=f"list the servers named '{name}'",
        )
        servers = [s for s in servers if s.get("name") == name and s.get("status") != "DELETED"]
        if len(servers) > 1:
            ids = ", ".join(sorted(s["id"] for s in servers))
            self.fail_json(
                msg=f"{len(servers)} servers are named '{name}' (ids {ids}); this module needs "
                "the name to pick one: delete or rename the extra ones (`openstack server delete "
                "ID`, `openstack server set --name NEW ID`)",
                ids=sorted(s["id"] for s in servers),
            )
        return servers[0] if servers else None

    def show(self, server_id: str) -> dict | None:
        """The server's body, or None once it is gone (404)."""
        response = self.session.call(
            "GET",
            f"{self.compute}/servers/{server_id}",
            what=f"show server '{self.params['name']}' ({server_id})",
            allow=(404,),
        )
        if response.status == 404:
            return None
        return response.body["server"]

    def _only(self, kind: str, wanted: str, found: list) -> str | None:
        """The id of the one match, None when there is none; two or more fail the task."""
        if len(found) > 1:
            ids = ", ".join(str(item["id"]) for item in found)
            self.fail_json(
                msg=f"{len(found)} {kind}s are named '{wanted}' (ids {ids}); give the id"
            )
        return str(found[0]["id"]) if found else None

    def _not_found(self, kind: str, wanted: str, where: str, listing: str) -> None:
        self.fail_json(
            msg=f"{kind} '{wanted}' not found in the {where} (neither a name nor an id of "
            f"a {kind} this user may use); list them with `openstack {kind} {listing}`, or "
            f"create it (`openstack {kind} create`)"
        )

    def flavor_id(self) -> str:
        wanted = self.params["flavor"]
        what = f"look up flavor '{wanted}'"
        flavors = self.session.collect(f"{self.compute}/flavors/detail", "flavors", what=what)
        found = self._only("flavor", wanted, [f for f in flavors if str(f.get("id")) == wanted])
        found = found or self._only(
            "flavor", wanted, [f for f in flavors if f.get("name") == wanted]
        )
        if found:
            return found
        # A private flavor the user may use is shown by id even when the list leaves it out.
        response = self.session.call(
            "GET", f"{self.compute}/flavors/{quote(wanted, safe='')}", what=what, allow=(404,)
        )
        if response.status == 404:
            self._not_found("flavor", wanted, f"compute service at {self.compute}", "list --all")
        return str(response.body["flavor"]["id"])

    def image_id(self) -> str:
        wanted = self.params["image"]
        url = f"{versioned_url(self.session.endpoint('image'), 'v2')}/images"
        what = f"look up image '{wanted}'"
        images = self.session.collect(url, "images", query={"name": wanted}, what=what)
        found = self._only("image", wanted, images)
        if found:
            return found
        if _UUID.match(wanted):
            response = self.session.call("GET", f"{url}/{wanted}", what=what, allow=(404, 400, 403))
            if response.status == 200:
                return str(response.body["id"])
        self._not_found("image", wanted, f"image service at {url}", "list")
        raise AssertionError  # unreachable: fail_json exits

    # -- acting --------------------------------------------------------------------------------

    def create(self) -> dict:
        name = self.params["name"]
        missing = [option for option in ("image", "flavor") if not self.params[option]]
        if missing:
            self.fail_json(
                msg=f"server '{name}' does not exist, and creating it needs "
                f"{' and '.join(missing)}; add {', '.join(missing)} to the task"
            )
        request = {"name": name, "flavorRef": self.flavor_id(), "imageRef": self.image_id()}
        if self.params["metadata"]:
            request["metadata"] = {str(k): str(v) for k, v in self.params["metadata"].items()}
        for option in ("key_name", "availability_zone", "networks"):
            if self.params[option] is not None:
                request[option] = self.params[option]
        if self.check_mode:
            return {}
        response = self.session.call(
            "POST",
            f"{self.compute}/servers",
            {"server": request},
            what=f"create server '{name}'",
        )
        server_id = response.body["server"]["id"]
        return self.show(server_id) or {"id": server_id}

    def action(self, server: dict, body: dict) -> None:
        verb = next(iter(body))
        self.session.call(
            "POST",
            f"{self.compute}/servers/{server['id']}/action",
            body,
            what=f"{verb} server '{self.params['name']}' ({server['id']})",
        )

    def fail_on_error(self, server: dict) -> None:
        if server.get("status") != "ERROR":
            return
        fault = (server.get("fault") or {}).get("message") or "no fault was recorded"
        self.fail_json(
            msg=f"server '{self.params['name']}' ({server['id']}) is in ERROR: "
            f"{fault.rstrip('. ')}. Fix the cause, then delete it (state=absent) and run the "
            "task again",
            server=server,
            id=server["id"],
        )

    def wait_status(self, server: dict, status: str | None) -> dict:
        """Poll until no task runs on the server and its status is ``status`` (any status when
        None); ERROR, or the server vanishing, fails the task."""
        name = self.params["name"]
        seen: dict = {}

        def settled() -> dict | None:
            current = self.show(server["id"])
            if current is None:
                self.fail_json(
                    msg=f"server '{name}' ({server['id']}) was deleted while waiting for it; "
                    "someone else deleted it: run the task again to create it",
                    id=server["id"],
                )
            seen.update(current)
            self.fail_on_error(current)
            if current.get("OS-EXT-STS:task_state") is not None or current["status"] == "BUILD":
                return None
            return current if status is None or current["status"] == status else None

        return self.wait(
            settled,
            f"server '{name}' ({server['id']}) to be {status or 'done with its current task'}",
            describe=lambda: _describe(seen),
        )

    def wait_gone(self, server: dict) -> None:
        self.wait(
            lambda: self.show(server["id"]) is None,
            f"server '{self.params['name']}' ({server['id']}) to be deleted",
        )

    # -- the states ----------------------------------------------------------------------------

    def absent(self, server: dict | None) -> None:
        if server is None:
            self.exit_json(changed=False)
        deleting = server.get("OS-EXT-STS:task_state") == "deleting"
        if self.check_mode:
            self.exit_json(changed=not deleting, id=server["id"])
        changed = False
        if not deleting:
            response = self.session.call(
                "DELETE",
                f"{self.compute}/servers/{server['id']}",
                what=f"delete server '{self.params['name']}' ({server['id']})",
                allow=(404,),
            )
            changed = response.status != 404
        if self.params["wait"]:
            self.wait_gone(server)
        self.exit_json(changed=changed, id=server["id"])

    def run(self) -> None:
        state = self.params["state"]
        server = self.find()
        if state == "absent":
            self.absent(server)
        wait = self.params["wait"]
        created = server is None
        if created:
            server = self.create()
            if self.check_mode:
                self.exit_json(changed=True)
            # A new server can only be stopped once built, whatever `wait` says.
            if wait or state == "stopped":
                server = self.wait_status(server, "ACTIVE")
        self.fail_on_error(server)
        if state == "present" or (created and state in ("started", "rebooted")):
            if wait and not created:
                server = self.wait_status(server, None)
            self.exit_json(changed=created, server=server, id=server["id"])

        # started, stopped, rebooted on an existing (or just built) server: act once settled.
        if server.get("OS-EXT-STS:task_state") is not None or server["status"] == "BUILD":
            server = self.wait_status(server, None)
        body = self.wanted_action(state, server["status"])
        if body is None:
            self.exit_json(changed=created, server=server, id=server["id"])
        if self.check_mode:
            self.exit_json(changed=True, server=server, id=server["id"])
        self.action(server, body)
        if wait:
            server = self.wait_status(server, _TARGET[state])
        else:
            server = self.show(server["id"]) or server
        self.exit_json(changed=True, server=server, id=server["id"])

    def wanted_action(self, state: str, status: str) -> dict | None:
        """The action body that brings a settled server from ``status`` to ``state``."""
        if state == "started":
            return None if status == "ACTIVE" else {"os-start": None}
        if state == "stopped":
            return None if status == "SHUTOFF" else {"os-stop": None}
        reboot_type = self.params["reboot_type"]
        if status == "SHUTOFF" and reboot_type == "SOFT":
            return {"os-start": None}
        return {"reboot": {"type": reboot_type}}


def main() -> None:
    ServerModule()()


if __name__ == "__main__":
    main()
