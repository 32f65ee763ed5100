"""The Gateway API Inference Extension's CRDs (``sigs.k8s.io/gateway-api-inference-extension``:
InferencePool); ``--without inference-extension`` leaves them out.

Owns: which program of ``programs.toml`` the set comes from (``kaic.lab.crds.CrdSet``).
"""

from __future__ import annotations

from kaic.lab.component import register
from kaic.lab.crds import CrdSet


@register
class InferenceExtension(CrdSet):
    name = "inference-extension"
    program = "inference-extension"
    description = (
        "Gateway API Inference Extension CRDs (InferencePool, inference.networking.k8s.io/v1)"
    )
    group = "inference.networking.k8s.io"
