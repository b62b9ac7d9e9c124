#!/usr/bin/python
# Copyright: Cirrus contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: merge one cloud entry into an OpenStack clouds.yaml."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: clouds_yaml
short_description: Add, update or remove one entry of an OpenStack clouds.yaml
description:
  - Reads an OpenStack client configuration file (C(clouds.yaml)), sets or removes the entry
    O(name) under C(clouds), and writes the file back only when something differs.
  - Every other entry, and every other top-level key of the file, is kept as it is.
  - The file holds passwords, so it is written atomically with mode O(mode) (C(0600) by default)
    and its directory is created with mode C(0700) when missing.
  - Comments and key order of an existing file are not preserved when it is rewritten.
version_added: "0.1.0"
author: Cirrus contributors
options:
  path:
    description:
      - The file to edit. C(~) is expanded for the user the module runs as.
    type: path
    default: ~/.config/openstack/clouds.yaml
  name:
    description:
      - Name of the entry under C(clouds), as used by C(openstack --os-cloud NAME).
    type: str
    required: true
  cloud:
    description:
      - The entry itself (C(auth), C(region_name), C(interface), ...). It replaces the whole entry
        O(name); nested values are not merged with the old ones.
      - Required with O(state=present). Never logged.
    type: dict
  state:
    description:
      - V(present) sets the entry, V(absent) removes it (the file stays, even when empty).
    type: str
    choices: [present, absent]
    default: present
  mode:
    description:
      - Permissions of the file; corrected when they differ, even if the entry did not change.
    type: raw
    default: "0600"
attributes:
  check_mode:
    support: full
    description: Reports whether the file would change, without writing it.
  diff_mode:
    support: none
    description: Not supported, so that passwords never reach a diff.
requirements:
  - PyYAML on the host the module runs on.
notes:
  - Runs where the client runs, usually the deploy host (C(delegate_to=localhost)).
"""

EXAMPLES = r"""
- name: Write the admin entry of the Cirrus cloud
  clouds_yaml:
    name: cirrus
    cloud:
      auth:
        auth_url: http://10.231.0.11:5000/v3
        username: admin
        password: "{{ cirrus_admin_password }}"
        project_name: admin
        user_domain_name: Default
        project_domain_name: Default
      region_name: RegionOne
      interface: public
      identity_api_version: 3
  delegate_to: localhost
  no_log: true

- name: Remove an entry, keeping the others
  clouds_yaml:
    path: /etc/openstack/clouds.yaml
    name: old-lab
    state: absent
"""

RETURN = r"""
path:
  description: The file, with C(~) expanded.
  returned: always
  type: str
  sample: /root/.config/openstack/clouds.yaml
name:
  description: The entry that was set or removed.
  returned: always
  type: str
  sample: cirrus
entries:
  description: Names of every entry under C(clouds) after the change, sorted.
  returned: always
  type: list
  elements: str
  sample: [cirrus, cirrus-demo, devstack]
entry_changed:
  description:
    - Whether the entry itself was added, changed or removed.
    - C(changed) is also true when only the file's mode was corrected.
  returned: always
  type: bool
  sample: true
"""

import os  # noqa: E402 - Ansible modules put their documentation first
import stat  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - reported by fail_json
    HAS_YAML = False


class CloudsYaml:
    """Read the file, compare the wanted entry with the current one, write only the difference."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.path = os.path.abspath(os.path.expanduser(module.params["path"]))
        self.name = module.params["name"]
        self.state = module.params["state"]
        self.cloud = module.params["cloud"]
        self.mode = self._parse_mode(module.params["mode"])

    def _parse_mode(self, value: object) -> int:
        try:
            if isinstance(value, int):
                return value
            return int(str(value), 8)
        except ValueError:
            self.module.fail_json(msg=f"mode must be an octal number such as '0600', got {value!r}")
        raise AssertionError  # unreachable: fail_json exits

    def read(self) -> dict:
        if not os.path.exists(self.path):
            return {}
        error = None
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError) as exc:
            error = str(exc).replace("\n", " ")
        if error is not None:
            self.module.fail_json(
                msg=f"{self.path}: cannot read it as YAML ({error}). Fix the file or move it away; "
                "this module never overwrites a file it cannot parse.",
                path=self.path,
            )
        if data is None:
            return {}
        if not isinstance(data, dict) or not isinstance(data.get("clouds", {}), dict):
            self.module.fail_json(
                msg=f"{self.path}: expected a mapping with a `clouds` mapping at the top; "
                "fix the file or move it away.",
                path=self.path,
            )
        return data

    def write(self, data: dict) -> None:
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".clouds.", suffix=".yaml", dir=directory)
        try:
            os.fchmod(fd, self.mode)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                yaml.safe_dump(data, handle, default_flow_style=False, sort_keys=True)
            os.replace(tmp, self.path)
            return
        except OSError as exc:
            error = str(exc)
        if os.path.exists(tmp):
            os.unlink(tmp)
        self.module.fail_json(msg=f"{self.path}: cannot write it ({error})", path=self.path)

    def current_mode(self) -> int | None:
        try:
            return stat.S_IMODE(os.stat(self.path).st_mode)
        except FileNotFoundError:
            return None

    def run(self) -> None:
        if self.state == "present" and not isinstance(self.cloud, dict):
            self.module.fail_json(msg="cloud is required (a mapping) when state is present")
        data = self.read()
        clouds = dict(data.get("clouds") or {})
        if self.state == "present":
            entry_changed = clouds.get(self.name) != self.cloud
            clouds[self.name] = self.cloud
        else:
            entry_changed = self.name in clouds
            clouds.pop(self.name, None)

        exists = os.path.exists(self.path)
        write = entry_changed or (not exists and self.state == "present")
        mode_changed = exists and not write and self.current_mode() != self.mode
        changed = write or mode_changed
        if changed and not self.module.check_mode:
            if write:
                data = dict(data)
                data["clouds"] = clouds
                self.write(data)
            else:
                os.chmod(self.path, self.mode)
        self.module.exit_json(
            changed=changed,
            entry_changed=entry_changed,
            path=self.path,
            name=self.name,
            entries=sorted(clouds),
        )


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "~/.config/openstack/clouds.yaml"},
            "name": {"type": "str", "required": True},
            "cloud": {"type": "dict", "no_log": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "mode": {"type": "raw", "default": "0600"},
        },
        required_if=[("state", "present", ["cloud"])],
        supports_check_mode=True,
    )
    if not HAS_YAML:
        module.fail_json(msg="clouds_yaml needs PyYAML on the host it runs on (pip install pyyaml)")
    CloudsYaml(module).run()


if __name__ == "__main__":
    main()
