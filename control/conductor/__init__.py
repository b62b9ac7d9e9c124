"""The conductor: the only database access for compute hosts, heartbeats, stale-build sweeps."""
