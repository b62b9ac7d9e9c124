"""Blueprints of the compute API, one per resource family."""
