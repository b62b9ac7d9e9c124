# Copyright: Cirrus contributors
# Apache License 2.0 (see pyproject.toml)
"""The options every Cirrus ``cloud_*`` module takes to reach the cloud (their argument spec is
``module_utils/cirrus_cloud.py:CLOUD_ARGUMENT_SPEC``). A module's DOCUMENTATION names this
fragment in ``extends_documentation_fragment``; ansible.cfg's ``doc_fragment_plugins`` finds it."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  cloud:
    description:
      - Name of an entry of clouds.yaml, read from E(OS_CLIENT_CONFIG_FILE), then
        C(./clouds.yaml), C(~/.config/openstack/clouds.yaml) and C(/etc/openstack/clouds.yaml)
        as openstacksdk reads it (with C(secure.yaml) merged in).
      - Ignored when O(auth) is given.
    type: str
    default: cirrus
  auth:
    description:
      - Credentials given in the task instead of clouds.yaml (password login to Keystone v3).
      - Domains default to C(default) when neither a name nor an id is given.
    type: dict
    suboptions:
      auth_url:
        description:
          - The identity endpoint, e.g. C(http://controller:5000/v3) (C(/v3) is added when missing).
        type: str
        required: true
      username:
        description: User name (with O(auth.user_domain_name) or O(auth.user_domain_id)).
        type: str
      user_id:
        description: User id, instead of O(auth.username).
        type: str
      password:
        description: The password. Never logged.
        type: str
        required: true
      project_name:
        description: Project to work in (with its domain).
        type: str
      project_id:
        description: Project id, instead of O(auth.project_name).
        type: str
      user_domain_name:
        description: Domain of the user, by name.
        type: str
      user_domain_id:
        description: Domain of the user, by id.
        type: str
      project_domain_name:
        description: Domain of the project, by name.
        type: str
      project_domain_id:
        description: Domain of the project, by id.
        type: str
      domain_name:
        description: Domain of both the user and the project, when they have none of their own.
        type: str
      domain_id:
        description: Same as O(auth.domain_name), by id.
        type: str
  region_name:
    description:
      - Region of the endpoints to use; the clouds.yaml entry's C(region_name) by default, else
        the first endpoint of each service.
    type: str
  interface:
    description:
      - Which endpoints of the catalog to call; the clouds.yaml entry's C(interface) by default,
        else V(public).
    type: str
    choices: [public, internal, admin]
  validate_certs:
    description:
      - Whether to check the TLS certificates of HTTPS endpoints; the entry's C(verify) by default,
        else V(true).
    type: bool
  ca_cert:
    description:
      - CA bundle for HTTPS endpoints; the entry's C(cacert) by default.
    type: path
  api_timeout:
    description:
      - Seconds to wait for each HTTP answer.
    type: int
    default: 30
"""
