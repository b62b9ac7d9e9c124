"""The network service (Neutron v2.0 compatible), port 9696."""
