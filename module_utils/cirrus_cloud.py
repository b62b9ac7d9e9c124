# Copyright: Cirrus contributors
# Apache License 2.0 (see pyproject.toml)
"""What Cirrus's ``cloud_*`` modules share: options, clouds.yaml, a Keystone session, API calls.

The modules talk to the OpenStack-compatible APIs over plain HTTP (``ansible.module_utils.urls``),
so the host they run on needs Python and PyYAML only, not openstacksdk.

- :func:`cloud_argument_spec`: the options every module takes (``cloud`` or ``auth``,
  ``region_name``, ``interface``, ``wait``, ``timeout``, TLS, ``api_timeout``).
- :func:`load_cloud`: one entry of clouds.yaml, looked for where openstacksdk looks.
- :class:`Session`: a password token from Keystone v3 and its service catalog; :meth:`Session.call`
  sends one JSON request and turns an API error into a message naming the call, the HTTP status
  and the API's own words.
- :func:`wait_for`: poll until a condition holds or the time is up.
- :class:`CirrusModule`: the base of a module: builds the AnsibleModule, opens the session, runs
  :meth:`CirrusModule.run`.
"""

from __future__ import annotations

import json
import os
import re
import time
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urljoin

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import ConnectionError as UrlConnectionError
from ansible.module_utils.urls import open_url

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - reported by load_cloud
    HAS_YAML = False

#: Options every cloud_* module takes; module options are added to a copy of it.
CLOUD_ARGUMENT_SPEC = {
    "cloud": {"type": "str", "default": "cirrus"},
    "auth": {
        "type": "dict",
        "no_log": False,  # only its password is secret (masking all would hide auth_url)
        "options": {
            "auth_url": {"type": "str", "required": True},
            "username": {"type": "str"},
            "user_id": {"type": "str"},
            "password": {"type": "str", "required": True, "no_log": True},
            "project_name": {"type": "str"},
            "project_id": {"type": "str"},
            "user_domain_name": {"type": "str"},
            "user_domain_id": {"type": "str"},
            "project_domain_name": {"type": "str"},
            "project_domain_id": {"type": "str"},
            "domain_name": {"type": "str"},
            "domain_id": {"type": "str"},
        },
    },
    "region_name": {"type": "str"},
    "interface": {"type": "str", "choices": ["public", "internal", "admin"]},
    "validate_certs": {"type": "bool"},
    "ca_cert": {"type": "path"},
    "api_timeout": {"type": "int", "default": 30},
    "wait": {"type": "bool", "default": True},
    "timeout": {"type": "int", "default": 300},
}

_CONFIG_NAMES = ("clouds.yaml", "clouds.yml", "clouds.json")
_SECURE_NAMES = ("secure.yaml", "secure.yml", "secure.json")

#: What to do about an HTTP status, when the caller has nothing more precise to say.
_STATUS_HINTS = {
    400: "fix the value the message names and run the task again",
    401: "the credentials were refused or the token expired; check {source}",
    403: "the user is not allowed to do this, or a quota is used up (see the message); "
    "ask an administrator, or free some resources",
    404: "check the name or id, and that the endpoint in the service catalog is right "
    "(`openstack endpoint list`)",
    409: "the resource is busy or in the wrong state; wait for its current task to end "
    "and run the task again",
    413: "the request is over a size or quota limit (see the message)",
}
_SERVER_ERROR_HINT = (
    "the service failed; look at its log on the controller (e.g. "
    "`journalctl -u cirrus-compute-api`) and run the task again"
)


def cloud_argument_spec(options: dict | None = None) -> dict:
    """The shared options plus ``options`` (a module's own, which win on a clash)."""
    spec = {name: dict(value) for name, value in CLOUD_ARGUMENT_SPEC.items()}
    spec.update(options or {})
    return spec


# -- clouds.yaml -----------------------------------------------------------------------------------


class CloudConfigError(Exception):
    """clouds.yaml is missing, unreadable, or has no such cloud; the text says what to do."""


def config_dirs(environ: dict | None = None, cwd: str | None = None) -> list[str]:
    """The directories openstacksdk reads clouds.yaml from, in its order."""
    environ = os.environ if environ is None else environ
    home = environ.get("HOME") or os.path.expanduser("~")
    user_dir = os.path.join(home, ".config", "openstack")
    xdg = environ.get("XDG_CONFIG_HOME")
    dirs = [cwd or os.getcwd()]
    if xdg:
        dirs.append(os.path.join(xdg, "openstack"))
    dirs += [user_dir, "/etc/xdg/openstack", "/etc/openstack"]
    unique: list[str] = []
    for directory in dirs:
        if directory not in unique:
            unique.append(directory)
    return unique


def config_candidates(
    names: tuple[str, ...], env_var: str, environ: dict | None = None, cwd: str | None = None
) -> list[str]:
    """``$env_var`` first, then every name in every directory of :func:`config_dirs`."""
    environ = os.environ if environ is None else environ
    found = [environ[env_var]] if environ.get(env_var) else []
    for directory in config_dirs(environ, cwd):
        found += [os.path.join(directory, name) for name in names]
    return found


def _read_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as exc:
        reason = str(exc).replace("\n", " ")
        raise CloudConfigError(f"{path}: cannot read it as YAML ({reason}); fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("clouds", {}), dict):
        raise CloudConfigError(f"{path}: expected a mapping with a `clouds` mapping at the top")
    return data


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_cloud(name: str, environ: dict | None = None, cwd: str | None = None) -> tuple[dict, str]:
    """The entry ``name`` of the first clouds.yaml found, merged with the same entry of the first
    secure.yaml found (passwords kept apart, as openstacksdk allows); and the file's path."""
    if not HAS_YAML:
        raise CloudConfigError(
            "reading clouds.yaml needs PyYAML on the host the module runs on "
            "(pip install pyyaml), or give the credentials with the `auth` option"
        )
    candidates = config_candidates(_CONFIG_NAMES, "OS_CLIENT_CONFIG_FILE", environ, cwd)
    path = next((p for p in candidates if os.path.isfile(p)), None)
    if path is None:
        raise CloudConfigError(
            f"no clouds.yaml found (looked at {', '.join(candidates)}); write one (the deploy "
            "writes ~/.config/openstack/clouds.yaml on the deploy host), point "
            "OS_CLIENT_CONFIG_FILE at one, or give the credentials with the `auth` option"
        )
    clouds = _read_yaml(path).get("clouds") or {}
    if name not in clouds:
        known = ", ".join(sorted(clouds)) or "none"
        raise CloudConfigError(
            f"cloud '{name}' is not in {path} (its clouds: {known}); set the `cloud` option to "
            "one of them, add the entry, or give the credentials with the `auth` option"
        )
    entry = clouds[name] if isinstance(clouds[name], dict) else {}
    secure_candidates = config_candidates(_SECURE_NAMES, "OS_CLIENT_SECURE_FILE", environ, cwd)
    secure = next((p for p in secure_candidates if os.path.isfile(p)), None)
    if secure is not None:
        extra = (_read_yaml(secure).get("clouds") or {}).get(name)
        if isinstance(extra, dict):
            entry = _merge(entry, extra)
    return entry, path


# -- errors and waiting ----------------------------------------------------------------------------


def api_error_message(raw: bytes | str | None) -> str:
    """The message of an API error body.

    Understands Cirrus's and Keystone's ``{"error": {"code", "title", "message"}}``, the Nova,
    Cinder and Neutron style ``{"badRequest": {"message", "code"}}`` (any single key holding a
    ``message``), and falls back to the text itself, shortened, with HTML tags removed.
    """
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    text = (raw or "").strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        for value in body.values():
            if isinstance(value, dict) and value.get("message"):
                return str(value["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    text = re.sub(r"<[^>]+>", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > 300:
        text = text[:297] + "..."
    return text or "(no message in the answer)"


class WaitTimeout(Exception):
    """:func:`wait_for` ran out of time; ``last`` is the predicate's last answer."""

    def __init__(self, timeout: float, last: object) -> None:
        super().__init__(f"not done after {timeout:g} s")
        self.timeout = timeout
        self.last = last


def wait_for(
    predicate,
    timeout: float,
    interval: float = 0.5,
    max_interval: float = 5.0,
    sleep=time.sleep,
    clock=time.monotonic,
):
    """Call ``predicate()`` until it returns something true, and return that.

    The pause between calls starts at ``interval`` and grows by half each time up to
    ``max_interval``. ``predicate`` may raise to stop early (a resource that went ERROR). Raises
    :class:`WaitTimeout` after ``timeout`` seconds.
    """
    deadline = clock() + timeout
    pause = interval
    while True:
        result = predicate()
        if result:
            return result
        remaining = deadline - clock()
        if remaining <= 0:
            raise WaitTimeout(timeout, result)
        sleep(min(pause, remaining))
        pause = min(pause * 1.5, max_interval)


class APIError(Exception):
    """A failed call; ``str()`` is a message for a person (what, the status, the API's words,
    what to do)."""

    def __init__(self, message: str, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class Response:
    """The status, the decoded JSON body (``None`` when empty) and the headers of an answer."""

    def __init__(self, status: int, body: object, headers: dict) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def __repr__(self) -> str:
        return f"Response({self.status})"


# -- Keystone session -----------------------------------------------------------------------------


def versioned_url(url: str, version: str) -> str:
    """``url`` ending in ``/<version>`` (``/v3``, ``/v2``...), added when the URL has none."""
    url = url.rstrip("/")
    if re.search(rf"/{re.escape(version)}(\.\d+)?$", url):
        return url
    return f"{url}/{version}"


def _named(name: str | None, ident: str | None, default_id: str | None = None) -> dict | None:
    if ident:
        return {"id": ident}
    if name:
        return {"name": name}
    return {"id": default_id} if default_id else None


def password_auth_body(auth: dict) -> dict:
    """The ``POST /v3/auth/tokens`` body for a password, scoped to a project when one is given.

    Domains default to the ``domain_id``/``domain_name`` of the entry, then to ``default``."""
    shared_id, shared_name = auth.get("domain_id"), auth.get("domain_name")
    user = {"password": auth["password"]}
    if auth.get("user_id"):
        user["id"] = auth["user_id"]
    else:
        user["name"] = auth.get("username")
        user["domain"] = _named(
            auth.get("user_domain_name") or shared_name,
            auth.get("user_domain_id") or shared_id,
            "default",
        )
    body: dict = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}}
    if auth.get("project_id"):
        body["auth"]["scope"] = {"project": {"id": auth["project_id"]}}
    elif auth.get("project_name"):
        domain = _named(
            auth.get("project_domain_name") or shared_name,
            auth.get("project_domain_id") or shared_id,
            "default",
        )
        body["auth"]["scope"] = {"project": {"name": auth["project_name"], "domain": domain}}
    return body


class Session:
    """A Keystone v3 token and catalog, and JSON calls to the services it lists."""

    def __init__(
        self,
        auth: dict,
        source: str,
        region_name: str | None = None,
        interface: str = "public",
        validate_certs: bool = True,
        ca_cert: str | None = None,
        api_timeout: int = 30,
        user_agent: str = "cirrus-ansible",
    ) -> None:
        self.auth = auth
        self.source = source
        self.region_name = region_name
        self.interface = interface
        self.validate_certs = validate_certs
        self.ca_cert = ca_cert
        self.api_timeout = api_timeout
        self.user_agent = user_agent
        self.token: str | None = None
        self.catalog: list = []
        self.auth_url = ""
        #: The project and user of the token (ids), once logged in; ``None`` when unscoped.
        self.project_id: str | None = None
        self.user_id: str | None = None

    def authenticate(self) -> None:
        """Get a token and the catalog; :class:`APIError` when refused or unreachable."""
        raw_url = self.auth.get("auth_url")
        if not raw_url:
            raise APIError(
                f"{self.source} has no auth_url; add auth.auth_url (http://HOST:5000/v3)"
            )
        if re.search(r"/v2\.0/?$", raw_url):
            raise APIError(
                f"auth_url {raw_url} of {self.source} is Keystone v2.0; Cirrus and these modules "
                "speak v3 only: end it with /v3"
            )
        if not self.auth.get("password"):
            raise APIError(f"{self.source} has no password; add auth.password")
        if not (self.auth.get("username") or self.auth.get("user_id")):
            raise APIError(f"{self.source} has no username; add auth.username")
        self.auth_url = versioned_url(raw_url, "v3")
        response = self.call(
            "POST",
            f"{self.auth_url}/auth/tokens",
            password_auth_body(self.auth),
            what=f"log in to the identity service as {self.source}",
            hint=(
                f"check username, password, project and domains of {self.source}"
                " (`openstack token issue` with the same credentials fails the same way)"
            ),
            authenticated=False,
        )
        self.token = response.headers.get("X-Subject-Token") or response.headers.get(
            "x-subject-token"
        )
        token_body = (response.body or {}).get("token") or {}
        self.catalog = token_body.get("catalog") or []
        self.project_id = (token_body.get("project") or {}).get("id")
        self.user_id = (token_body.get("user") or {}).get("id")
        if not self.token:
            raise APIError(
                f"the identity service at {self.auth_url} answered without an X-Subject-Token "
                "header; is auth_url the identity service?"
            )

    def endpoint(self, *service_types: str) -> str:
        """The URL of the first of ``service_types`` in the catalog, for this session's
        interface and region (any region when none is set)."""
        for service_type in service_types:
            for service in self.catalog:
                if service.get("type") != service_type:
                    continue
                for endpoint in service.get("endpoints") or []:
                    if endpoint.get("interface") != self.interface:
                        continue
                    region = endpoint.get("region_id") or endpoint.get("region")
                    if self.region_name and region != self.region_name:
                        continue
                    return str(endpoint["url"]).rstrip("/")
        listed = sorted(
            f"{s.get('type')} {e.get('interface')} {e.get('region_id') or e.get('region')}"
            for s in self.catalog
            for e in (s.get("endpoints") or [])
        )
        region = f" in region {self.region_name}" if self.region_name else ""
        raise APIError(
            f"the service catalog of {self.source} has no {self.interface} endpoint for "
            f"{' or '.join(service_types)}{region} (it lists: {'; '.join(listed) or 'nothing'}); "
            "deploy and register the service (`openstack endpoint list` shows the catalog), or "
            "set `interface`/`region_name` to ones it has"
        )

    def call(
        self,
        method: str,
        url: str,
        body: object = None,
        query: dict | None = None,
        what: str | None = None,
        hint: str | None = None,
        allow: tuple = (),
        authenticated: bool = True,
    ) -> Response:
        """Send one request and decode its JSON answer.

        A 2xx answer, or one whose status is in ``allow`` (e.g. 404 to learn that something is
        gone), is returned; anything else raises :class:`APIError` with a message naming
        ``what`` was being done, the method and URL, the status, the API's message and ``hint``
        (a default per status when not given).
        """
        if query:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(query)}"
        what = what or f"{method} {url}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if authenticated and self.token:
            headers["X-Auth-Token"] = self.token
        try:
            answer = open_url(
                url,
                data=data,
                headers=headers,
                method=method,
                timeout=self.api_timeout,
                validate_certs=self.validate_certs,
                ca_path=self.ca_cert,
                http_agent=self.user_agent,
                use_netrc=False,
            )
            status, raw, answer_headers = answer.status, answer.read(), dict(answer.headers)
        except HTTPError as exc:
            status, answer_headers = exc.code, dict(exc.headers or {})
            try:
                raw = exc.read()
            except OSError:
                raw = b""
            if status not in allow:
                raise APIError(
                    self._failure(what, method, url, status, exc.reason, raw, hint), status, raw
                ) from None
        except (URLError, UrlConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise APIError(
                f"{what} failed: {method} {url} got no answer ({reason}); check that the service "
                "runs and that this host reaches the URL the service catalog gives "
                "(`openstack endpoint list`)"
            ) from None
        decoded = None
        if raw:
            try:
                decoded = json.loads(raw)
            except ValueError:
                if 200 <= status < 300:
                    raise APIError(
                        f"{what} failed: {method} {url} answered {status} with a body that is "
                        f"not JSON ({api_error_message(raw)}); is the URL an OpenStack API?",
                        status,
                        raw,
                    ) from None
                decoded = raw.decode("utf-8", "replace")
        return Response(status, decoded, answer_headers)

    def _failure(self, what, method, url, status, reason, raw, hint) -> str:
        if hint is None:
            hint = _STATUS_HINTS.get(status, _SERVER_ERROR_HINT if status >= 500 else "")
            hint = hint.format(source=self.source)
        message = f"{what} failed: {method} {url} answered {status} {reason}: "
        message += api_error_message(raw)
        if not message.endswith("."):
            message += "."
        return f"{message} {hint[0].upper() + hint[1:]}." if hint else message

    def collect(self, url: str, key: str, query: dict | None = None, what: str | None = None):
        """Every item of a paged list: follows Nova's ``<key>_links`` ``next`` and Glance's
        ``next``."""
        items: list = []
        seen: set = set()
        response = self.call("GET", url, query=query, what=what)
        while True:
            body = response.body if isinstance(response.body, dict) else {}
            items += body.get(key) or []
            following = body.get("next")
            for link in body.get(f"{key}_links") or []:
                if link.get("rel") == "next":
                    following = link.get("href")
            if not following or following in seen:
                return items
            seen.add(following)
            response = self.call("GET", urljoin(url, following), what=what)


# -- the module base ------------------------------------------------------------------------------


class CirrusModule:
    """The base of a cloud_* module.

    A subclass sets ``argument_spec`` (its own options; the shared ones are added) and
    ``module_kwargs`` (``required_if``, ``supports_check_mode``...), and implements :meth:`run`,
    which reads the current state, changes only the difference and ends with :meth:`exit_json`.
    Calling the instance logs in (``self.session``) and runs it; an :class:`APIError` raised by
    ``run`` ends the task with its message.
    """

    argument_spec: dict = {}
    module_kwargs: dict = {}
    user_agent = "cirrus-ansible"

    def __init__(self) -> None:
        self.module = AnsibleModule(
            argument_spec=cloud_argument_spec(self.argument_spec), **self.module_kwargs
        )
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.session: Session | None = None

    def fail_json(self, msg: str, **kwargs) -> None:
        self.module.fail_json(msg=msg, **kwargs)

    def exit_json(self, **kwargs) -> None:
        self.module.exit_json(**kwargs)

    def connect(self) -> Session:
        """A logged-in session from ``auth`` or the clouds.yaml entry ``cloud``; raises
        :class:`CloudConfigError` or :class:`APIError`."""
        params = self.params
        entry: dict = {}
        if params.get("auth"):
            auth = {k: v for k, v in params["auth"].items() if v is not None}
            source = "the `auth` option"
        else:
            entry, path = load_cloud(params["cloud"])
            auth = entry.get("auth") if isinstance(entry.get("auth"), dict) else {}
            source = f"cloud '{params['cloud']}' of {path}"
            if entry.get("auth_type") not in (None, "password", "v3password"):
                raise CloudConfigError(
                    f"{source} uses auth_type {entry['auth_type']}; these modules log in with a "
                    "password only: give that cloud a password entry, or use the `auth` option"
                )
        verify = entry.get("verify", True)
        if params.get("validate_certs") is not None:
            verify = params["validate_certs"]
        session = Session(
            auth,
            source,
            region_name=params.get("region_name") or entry.get("region_name"),
            interface=params.get("interface") or entry.get("interface") or "public",
            validate_certs=bool(verify),
            ca_cert=params.get("ca_cert") or entry.get("cacert"),
            api_timeout=params["api_timeout"],
            user_agent=self.user_agent,
        )
        session.authenticate()
        return session

    def wait(self, predicate, what: str, timeout: int | None = None, describe=None):
        """:func:`wait_for` with the task's ``timeout``; on timeout the task fails saying
        ``what`` was awaited and, from ``describe()``, what was seen last."""
        timeout = self.params["timeout"] if timeout is None else timeout
        try:
            return wait_for(predicate, timeout)
        except WaitTimeout:
            seen = f" (last seen: {describe()})" if describe is not None else ""
            self.fail_json(
                msg=f"timed out after {timeout} s waiting for {what}{seen}; raise `timeout`, or "
                "look at the service's logs for what holds it up"
            )
        raise AssertionError  # unreachable: fail_json exits

    def run(self) -> None:
        raise NotImplementedError

    def __call__(self) -> None:
        try:
            self.session = self.connect()
            self.run()
        except (APIError, CloudConfigError) as exc:
            self.fail_json(msg=str(exc))
