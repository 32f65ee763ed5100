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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaic.lab.component import Component, ProcessComponent, all_components, register
    from kaic.lab.context import LabContext
    from kaic.lab.controller import GoController
    from kaic.lab.lab import ComponentStatus, Lab, list_labs
    from kaic.lab.options import LabOptions

_EXPORTS = {
    "Component": "kaic.lab.component",
    "ComponentStatus": "kaic.lab.lab",
    "GoController": "kaic.lab.controller",
    "Lab": "kaic.lab.lab",
    "LabContext": "kaic.lab.context",
    "LabOptions": "kaic.lab.options",
    "ProcessComponent": "kaic.lab.component",
    "all_components": "kaic.lab.component",
    "list_labs": "kaic.lab.lab",
    "register": "kaic.lab.component",
}
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


def __getattr__(name: str) -> Any:
    # NOTE: imported on first use, so that a simulator (``python -m kaic.lab.sims.X``)
    # loads only what it runs, not the whole framework (PKI, build, components).
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
