"""Compatibility shim for the openstack.cloud modules run by playbooks/clouds.yml.

openstack.cloud 2.5.0 (the collection shipped in the ``ansible`` 12 package) reads
``openstack.version.__version__``, but openstacksdk 4.15 and later no longer import that
submodule from the package (python-openstackclient 10.5 needs openstacksdk >= 4.21), so every
module fails with "module 'openstack' has no attribute 'version'". openstack.cloud 2.6.0 fixes it.
clouds.yml puts this directory on PYTHONPATH for its tasks only; Python imports ``sitecustomize``
at start-up, and this imports the submodule so the attribute exists. Remove it once the collection
in use is 2.6.0 or later.
"""

import warnings

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import openstack.version  # noqa: F401
except ImportError:  # no openstacksdk here: the modules report it themselves
    pass
