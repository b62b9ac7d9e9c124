"""Placeholder: filled in by the CRUD work."""

from flask import Blueprint

bp = Blueprint("identity_projects", __name__, url_prefix="/v3")
