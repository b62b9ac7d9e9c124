"""The network API blueprints: one module per resource family, sharing ``common``."""
