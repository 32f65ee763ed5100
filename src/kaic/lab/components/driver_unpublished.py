"""A simulated GPU driver that publishes no versions (``--with driver-unpublished``), for
negative tests of driver_runtime_management.

Owns: nothing but its name. The ``nodes`` component reads it and then leaves out the
``driverVersion``/``cudaDriverVersion`` attributes of the GPUs' ResourceSlice devices and
the GPU Feature Discovery driver and CUDA labels of the GPU nodes. The installed
(simulated) driver stays as it is: ``nvidia-smi`` in a granted container still reports it.
"""

from __future__ import annotations

from kaic.lab.component import Component, register
from kaic.lab.components.nodes import UNPUBLISHED_COMPONENT
from kaic.lab.context import LabContext


@register
class DriverUnpublished(Component):
    name = UNPUBLISHED_COMPONENT
    description = (
        "the simulated GPU driver publishes no driver or CUDA version (no DRA attributes, "
        "no node labels), for negative tests of driver_runtime_management"
    )
    order = 71
    optional = True
    default = False

    def start(self, ctx: LabContext) -> None:
        """Nothing to start: ``nodes`` publishes accordingly."""
