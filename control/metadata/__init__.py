"""The metadata API (Nova's metadata service), port 8775: what a guest learns about itself (its
SSH key, user data, hostname, server metadata), in the OpenStack and the EC2 formats, reached
only through the metadata proxy of the l3 agent, which signs each request. See docs/metadata.md.
"""
