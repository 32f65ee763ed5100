"""The Gateway API's standard channel CRDs (``sigs.k8s.io/gateway-api``), for the
inference-gateway requirements; ``--without gateway-api`` gives a lab without them.

Owns: which program of ``programs.toml`` the set comes from (``kaic.lab.crds.CrdSet``).
"""

from __future__ import annotations

from kaic.lab.component import register
from kaic.lab.crds import CrdSet


@register
class GatewayApi(CrdSet):
    name = "gateway-api"
    program = "gateway-api"
    description = "Gateway API standard channel CRDs (gateway.networking.k8s.io/v1)"
    group = "gateway.networking.k8s.io"
