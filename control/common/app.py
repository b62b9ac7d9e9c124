"""The Flask application base every API service is built on.

``make_app`` wires the parts every service shares: request ids, JSON errors for every failure,
authentication of ``X-Auth-Token`` on every endpoint not marked :func:`public`, access logging, a
``/healthcheck`` endpoint and a body size limit. Each service's ``create_app()`` calls it with its
blueprints, its token authenticator and its policy defaults.

Beside it, the helpers every service's views share: :func:`respond` (a JSON answer),
:func:`no_content`, :func:`context`, :func:`project_id` and :func:`is_admin`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from control.common import errors, log, policy
from control.common.config import Config
from control.common.context import RequestContext, new_request_id

LOG = logging.getLogger("cirrus.api")

F = TypeVar("F", bound=Callable[..., Any])

Authenticator = Callable[[str], RequestContext]

_REQUEST_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def public(view: F) -> F:
    """Mark a view as reachable without a token (version discovery, token issue, health)."""
    view._cirrus_public = True  # type: ignore[attr-defined]
    return view


def no_content() -> Response:
    """204 with no body (deletes, grants, uploads)."""
    return Response(status=204)


def respond(body: Any, status: int = 200) -> Response:
    """``body`` as JSON with ``status`` (the answer of most views)."""
    response = jsonify(body)
    response.status_code = status
    return response


def error_response(error: errors.APIError) -> Response:
    response = jsonify(error.to_dict())
    response.status_code = error.code
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def make_app(
    service: str,
    config: Config,
    blueprints: Iterable[Blueprint],
    authenticate: Authenticator,
    www_authenticate: Callable[[], str],
) -> Flask:
    """Build the Flask app of ``service``.

    ``authenticate`` turns a token into a :class:`RequestContext` or raises
    :class:`errors.Unauthorized`; ``www_authenticate`` gives the header value sent with every 401
    (it may depend on the request's host).
    """
    app = Flask(f"cirrus.{service}")
    app.config["MAX_CONTENT_LENGTH"] = config.get_int("api", "max_request_body_size", 1024 * 1024)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["cirrus.config"] = config
    app.url_map.strict_slashes = False

    @app.before_request
    def _start_request() -> None:
        incoming = request.headers.get("X-OpenStack-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else new_request_id()
        g.request_id = request_id
        g.started = time.monotonic()
        log.request_id_var.set(request_id)

    @app.before_request
    def _authenticate() -> None:
        view = app.view_functions.get(request.endpoint or "")
        if view is None or getattr(view, "_cirrus_public", False):
            return
        token = request.headers.get("X-Auth-Token")
        if not token:
            raise errors.Unauthorized(headers={"WWW-Authenticate": www_authenticate()})
        try:
            context = authenticate(token)
        except errors.Unauthorized as exc:
            exc.headers.setdefault("WWW-Authenticate", www_authenticate())
            raise
        context.request_id = g.request_id
        g.context = context

    @app.after_request
    def _finish_request(response: Response) -> Response:
        request_id = g.get("request_id") or new_request_id()
        response.headers["x-openstack-request-id"] = request_id
        started = g.get("started")
        elapsed = (time.monotonic() - started) * 1000 if started else 0.0
        LOG.info(
            "%s %s %s %d %.1fms",
            request.remote_addr,
            request.method,
            request.path,
            response.status_code,
            elapsed,
        )
        return response

    @app.errorhandler(errors.APIError)
    def _api_error(error: errors.APIError) -> Response:
        if error.code == 401:
            error.headers.setdefault("WWW-Authenticate", www_authenticate())
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = error.code or 500
        messages = {
            404: "The resource could not be found.",
            405: f"The method {request.method} is not allowed for {request.path}.",
            413: "The request body is larger than this service accepts.",
        }
        api_error = errors.APIError(messages.get(code, error.description or error.name))
        api_error.code = code
        api_error.title = error.name
        response = error_response(api_error)
        if code == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        LOG.exception("unexpected error handling %s %s", request.method, request.path)
        return error_response(
            errors.APIError("An unexpected error prevented the server from answering.")
        )

    health = Blueprint("health", __name__)

    @health.route("/healthcheck", methods=["GET", "HEAD"])
    @public
    def healthcheck() -> Response:
        return Response("OK", mimetype="text/plain")

    app.register_blueprint(health)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    return app


def context() -> RequestContext:
    """The context of the current request (set by authentication)."""
    ctxt: RequestContext = g.context
    return ctxt


def project_id() -> str:
    """The project the caller's token is scoped to; ``""`` for an unscoped token."""
    return context().project_id or ""


def is_admin() -> bool:
    """Whether the caller passes the service's ``context_is_admin`` rule."""
    return policy.allowed("context_is_admin")
