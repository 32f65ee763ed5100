"""The only importer of the Kubernetes client: connect, discover, CRUD, watch, exec,
port-forward, scrape, waits, and bookkeeping of what a run creates.

Must not decide pass or fail. ``kaic.cluster.api`` holds the client-free interface
(``ClusterAPI``) that checks program against.
"""

from kaic.cluster.api import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    RUN_ID_LABEL,
    ApiResource,
    ClusterAPI,
    ExecResult,
    KubeObject,
    condition,
    has_condition,
    labels_of,
    name_of,
    namespace_of,
)
from kaic.cluster.quantity import parse_quantity

__all__ = [
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "RUN_ID_LABEL",
    "ApiResource",
    "ClusterAPI",
    "ExecResult",
    "KubeObject",
    "condition",
    "has_condition",
    "labels_of",
    "name_of",
    "namespace_of",
    "parse_quantity",
]
