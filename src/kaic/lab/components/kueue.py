"""Kueue's CRDs (``sigs.k8s.io/kueue``); the controller is the ``kueue-controller``
component. ``--without kueue`` gives a lab without a gang-scheduling API.

Owns: which program of ``programs.toml`` the set comes from (``kaic.lab.crds.CrdSet``).
"""

from __future__ import annotations

from kaic.lab.component import register
from kaic.lab.crds import CrdSet


@register
class Kueue(CrdSet):
    name = "kueue"
    program = "kueue"
    description = "Kueue CRDs (kueue.x-k8s.io v1beta1/v1beta2, no conversion webhook)"
    group = "kueue.x-k8s.io"
