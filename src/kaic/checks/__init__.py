"""Checks: one module per area; a check proves one requirement on a cluster.

Must not import the Kubernetes client; talks to the cluster through
``kaic.cluster.api.ClusterAPI``. Each module registers its checks with
``@kaic.checks.base.check``; ``load_builtin_checks()`` imports them all.
"""

from __future__ import annotations

import importlib
import pkgutil

from kaic.checks.base import REGISTRY, Registry

__all__ = ["REGISTRY", "load_builtin_checks"]

_NOT_CHECKS = {"base"}


def load_builtin_checks() -> Registry:
    """Import every check module of this package (idempotent) and return the registry."""
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in _NOT_CHECKS:
            continue
        importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY
