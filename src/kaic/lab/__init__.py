"""The local lab cluster: real upstream binaries with simulated accelerators.

Owns: starting and stopping the lab (``Lab``), its options (``LabOptions``) and the
component interface others extend (``Component``, ``ProcessComponent``, ``register``).
Must not import the ``kubernetes`` client; it talks to its apiserver over plain HTTPS
and with the ``kubectl`` it built. See docs/lab.md.
"""

from kaic.lab.component import Component, ProcessComponent, all_components, register
from kaic.lab.context import LabContext
from kaic.lab.lab import ComponentStatus, Lab, list_labs
from kaic.lab.options import LabOptions

__all__ = [
    "Component",
    "ComponentStatus",
    "Lab",
    "LabContext",
    "LabOptions",
    "ProcessComponent",
    "all_components",
    "list_labs",
    "register",
]
