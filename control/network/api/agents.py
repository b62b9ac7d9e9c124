"""Agents: ``/v2.0/agents`` (admins). The rows are written by the agents' ``report_state`` over
RPC (``control/network/rpc.py``); ``alive`` is a heartbeat within ``[network] agent_down_time``.
Admins may set ``admin_state_up`` and ``description``, and delete an agent's row."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from sqlalchemy import select

from control.common import db, validation
from control.common.app import no_content
from control.network import models, render
from control.network.api import common
from control.network.api.common import Listing, enforce, not_found, respond
from control.network.rpc import is_alive

bp = Blueprint("network_agents", __name__)

UPDATE = {
    "type": "object",
    "properties": {
        "admin_state_up": validation.BOOLEAN,
        "description": {"type": ["string", "null"], "maxLength": 255},
    },
    "additionalProperties": False,
}

LISTING = Listing(
    "agents",
    models.Agent,
    {
        "id": models.Agent.id,
        "agent_type": models.Agent.agent_type,
        "binary": models.Agent.binary,
        "topic": models.Agent.topic,
        "host": models.Agent.host,
        "admin_state_up": models.Agent.admin_state_up,
        "availability_zone": models.Agent.availability_zone,
        "description": models.Agent.description,
        "created_at": models.Agent.created_at,
        "heartbeat_timestamp": models.Agent.heartbeat_timestamp,
    },
    booleans=frozenset({"admin_state_up"}),
)


def show_body(agent: models.Agent) -> dict[str, Any]:
    return render.agent(agent, is_alive(agent, common.settings().agent_down_time))


def find_agent(agent_id: str) -> models.Agent:
    agent = db.session().get(models.Agent, agent_id)
    if agent is None:
        raise not_found(f"Agent {agent_id} could not be found", "AgentNotFound")
    return agent


@bp.get("/v2.0/agents")
def list_agents() -> Response:
    enforce("get_agent", {})
    return common.list_response(LISTING, select(models.Agent), show_body)


@bp.get("/v2.0/agents/<agent_id>")
def show_agent(agent_id: str) -> Response:
    enforce("get_agent", {})
    return respond({"agent": common.only_fields(show_body(find_agent(agent_id)))})


@bp.put("/v2.0/agents/<agent_id>")
def update_agent(agent_id: str) -> Response:
    body = common.resource_body("agent", UPDATE)
    enforce("update_agent", {})
    agent = find_agent(agent_id)
    for key in ("admin_state_up", "description"):
        if key in body:
            setattr(agent, key, body[key])
    db.commit()
    return respond({"agent": show_body(agent)})


@bp.delete("/v2.0/agents/<agent_id>")
def delete_agent(agent_id: str) -> Response:
    enforce("delete_agent", {})
    db.session().delete(find_agent(agent_id))
    db.commit()
    return no_content()
