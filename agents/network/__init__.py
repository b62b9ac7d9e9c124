"""The network agent: Linux bridges, VXLAN (unicast FDB), tap wiring, security groups in
nftables. See docs/network-agent.md."""
