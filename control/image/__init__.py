"""The image service (Glance v2 compatible), port 9292."""
