"""Unattached NICs (``--with nics-unattached``): ``rdma-nics`` publishes its NICs and
the scheduler allocates them, but no pod gets an interface (a network driver that
allocates without wiring the pod): the negative case of high_performance_networking's
``InterfaceInPod``.

Owns: nothing but its name; ``kaic.lab.components.rdma_nics.runtime_args`` leaves the
container runtime's NIC flags out while it is on. Must not start processes.
"""

from __future__ import annotations

from kaic.lab.component import Component, register
from kaic.lab.components.rdma_nics import NAME, UNATTACHED
from kaic.lab.context import LabContext


@register
class NicsUnattached(Component):
    name = UNATTACHED
    description = (
        "rdma-nics publishes its NICs but no pod gets an interface (negative case of "
        "high_performance_networking)"
    )
    order = 73
    after = (NAME,)
    optional = True
    default = False
    needs = (NAME,)

    def start(self, ctx: LabContext) -> None:
        """Nothing to start: the container runtime leaves NICs unattached."""
