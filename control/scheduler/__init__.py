"""The scheduler: picks a host for a server and claims its resources atomically."""
