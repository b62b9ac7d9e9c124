"""Placeholder: filled in by the CRUD work."""

from flask import Blueprint

bp = Blueprint("identity_catalog", __name__, url_prefix="/v3")
