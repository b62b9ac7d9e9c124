"""The identity API (Keystone v3 compatible), port 5000."""

from __future__ import annotations

from flask import Flask, Response, g, request

from control.common import config as config_mod
from control.common import db, log, policy
from control.common.app import make_app
from control.common.context import RequestContext
from control.identity import policies, tokens
from control.identity.api import (
    assignments,
    auth,
    catalog,
    domains,
    projects,
    roles,
    users,
    versions,
)
from control.identity.fernet import KeyRepository

SERVICE = "identity"


def create_app(conf: config_mod.Config | None = None) -> Flask:
    conf = conf or config_mod.load(SERVICE)
    log.setup(conf.get("DEFAULT", "log_level", "INFO"))
    database = db.Database(
        conf.get("database", "connection"), pool_size=conf.get_int("database", "pool_size", 5)
    )
    keys = KeyRepository(
        conf.get("fernet_tokens", "key_repository", "/etc/cirrus/fernet-keys"),
        conf.get_int("fernet_tokens", "max_active_keys", 3),
    )
    provider = tokens.TokenProvider(
        keys,
        conf.get_int("token", "expiration", 3600),
        cache_ttl=conf.get_float("token", "cache_ttl", 5.0),
    )
    admin_project = (
        conf.get("identity", "admin_project_domain_name", "Default"),
        conf.get("identity", "admin_project_name", "admin"),
    )

    def authenticate(token: str) -> RequestContext:
        validated = tokens.validate(db.session(), provider, token)
        g.token = validated
        return tokens.to_context(validated, admin_project)

    def www_authenticate() -> str:
        return f'Keystone uri="{request.host_url.rstrip("/")}"'

    app = make_app(
        SERVICE,
        conf,
        [
            versions.bp,
            auth.bp,
            domains.bp,
            projects.bp,
            users.bp,
            roles.bp,
            assignments.bp,
            catalog.bp,
        ],
        authenticate,
        www_authenticate,
    )
    app.extensions["cirrus.identity.tokens"] = provider

    @app.after_request
    def _forget_validations_after_a_change(response: Response) -> Response:
        # A write may change what a token grants (a role removed, a project disabled): this worker
        # forgets what it validated; the others follow within [token] cache_ttl.
        if (
            request.method not in ("GET", "HEAD", "OPTIONS")
            and request.endpoint != "identity_auth.issue_token"
            and response.status_code < 400
        ):
            provider.cache.clear()
        return response

    db.init_app(app, database)
    policy.init_app(app, policy.Enforcer(policies.RULES, conf.get_optional("policy", "file")))
    return app
