"""The libvirt compute driver (``agents.compute.libvirt.driver.LibvirtDriver``).

Importing this package does not import the ``libvirt`` binding; ``.driver`` does.
"""
