"""The image API blueprints: one module per resource family, sharing ``common``."""
