"""Broken GPU isolation on purpose (``--with device-leak``): containers granted no GPU see
every GPU of their node, for negative tests of secure_accelerator_access.

Owns: switching the device visibility agent's mode ConfigMap to ``leak-unrequested``.
Must not start anything (the agent of ``device-visibility`` reads the mode).
"""

from __future__ import annotations

from kaic.lab.component import Component, register
from kaic.lab.components.device_visibility import LEAK_COMPONENT, mode_configmap
from kaic.lab.context import LabContext


@register
class DeviceLeak(Component):
    name = LEAK_COMPONENT
    description = (
        "break GPU isolation on purpose: containers granted no GPU see every GPU "
        "of their node (for negative tests of secure_accelerator_access)"
    )
    order = 76
    optional = True
    default = False

    def start(self, ctx: LabContext) -> None:
        ctx.apply([mode_configmap("leak-unrequested")])
