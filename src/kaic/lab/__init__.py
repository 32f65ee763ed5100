"""The local lab cluster: real upstream binaries with simulated accelerators.

Owns: starting and stopping the lab (``Lab``), its options (``LabOptions``) and the
component interface others extend (``Component``, ``ProcessComponent``, ``GoController``,
``register``). Must not import the ``kubernetes`` client; it talks to its apiserver with
``kaic.lab.apiserver`` and with the ``kubectl`` it built. See docs/lab.md.

The framework is this package's top level (``lab``, ``component``, ``controller``,
``crds``, ``context``, ``apiserver``, ``objects``, ``proc``, ``pki``, ``options``,
``programs``, ``binaries``, ``build``); the components are in ``components/`` (one
module per component name), the simulators run as subprocesses in ``sims/``.
"""

from kaic.lab.component import Component, ProcessComponent, all_components, register
from kaic.lab.context import LabContext
from kaic.lab.controller import GoController
from kaic.lab.lab import ComponentStatus, Lab, list_labs
from kaic.lab.options import LabOptions

__all__ = [
    "Component",
    "ComponentStatus",
    "GoController",
    "Lab",
    "LabContext",
    "LabOptions",
    "ProcessComponent",
    "all_components",
    "list_labs",
    "register",
]
