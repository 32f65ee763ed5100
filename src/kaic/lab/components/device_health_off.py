"""Failed devices that go unreported on purpose (``--with device-health-off``): the
simulated device plugin still advertises kaic's fault-injection contract but does not
react to it, for negative tests of ext_failed_device_detection.

Owns: the ConfigMap ``kube-system/kaic-lab-device-health`` with ``reporting: "off"``.
Must not start anything (the device visibility agent reads it, see
``kaic.lab.sims.device_health``).
"""

from __future__ import annotations

from typing import Any

from kaic.lab.component import Component, register
from kaic.lab.context import LabContext
from kaic.lab.sims import device_health

NAME = "device-health-off"


def reporting_configmap(reporting: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": device_health.CONFIGMAP_NAME,
            "namespace": device_health.CONFIGMAP_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "kaic-lab"},
        },
        "data": {"reporting": reporting},
    }


@register
class DeviceHealthOff(Component):
    name = NAME
    description = (
        "failed GPUs go unreported on purpose: the simulated device plugin ignores "
        "kaic.io/device-fault (for negative tests of ext_failed_device_detection)"
    )
    order = 76
    optional = True
    default = False
    needs = ("device-visibility",)

    def start(self, ctx: LabContext) -> None:
        ctx.apply([reporting_configmap("off")])
