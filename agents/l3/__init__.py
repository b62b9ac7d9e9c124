"""The l3-agent: router namespaces, SNAT and floating IPs (docs/l3-agent.md)."""
