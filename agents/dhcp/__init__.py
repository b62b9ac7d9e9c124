"""The DHCP agent (``cirrus-dhcp-agent``): dnsmasq per network in a ``qdhcp-`` namespace."""
