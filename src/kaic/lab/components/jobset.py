"""The JobSet CRD (``sigs.k8s.io/jobset``), no controller; ``--without jobset`` leaves it out.

Owns: which program of ``programs.toml`` the set comes from (``kaic.lab.crds.CrdSet``).
"""

from __future__ import annotations

from kaic.lab.component import register
from kaic.lab.crds import CrdSet


@register
class JobSet(CrdSet):
    name = "jobset"
    program = "jobset"
    description = "JobSet CRD (jobset.x-k8s.io/v1alpha2)"
    group = "jobset.x-k8s.io"
