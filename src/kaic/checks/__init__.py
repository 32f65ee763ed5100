"""Checks: one module per requirement id, on one shared floor of helpers.

A check proves one requirement on a cluster. Each requirement module is named by the
requirement id it proves and registers exactly that check with ``@check``:

==============================  =============================================
module                          proves (upstream test)
==============================  =============================================
``dra_support``                 DRA API served and usable (TestDRASupport)
``driver_runtime_management``   published accelerator driver versions are true
                                (TestAcceleratorDriverRuntimeManagement)
``gpu_sharing``                 one physical accelerator shared (TestGPUSharing)
``ai_inference``                Gateway API for inference (TestGatewayAPIInference)
``advanced_inference_ingress``  InferencePool routed, picker follows metrics
                                (TestAdvancedInferenceIngress)
``gang_scheduling``             all-or-nothing gangs (TestGangScheduling)
``cluster_autoscaling``         accelerator node pool scales
                                (TestAcceleratorClusterAutoscaling)
``pod_autoscaling``             HPA on a custom metric
                                (TestAcceleratorHorizontalPodAutoscaling)
``accelerator_metrics``         per-accelerator metrics
                                (TestAcceleratorPerformanceMetrics)
``ai_service_metrics``          workload metrics collected (TestAIServiceMetrics)
``secure_accelerator_access``   accelerator isolation (TestSecureAcceleratorAccess)
``virtualized_accelerator``     virtual accelerators claimed and isolated
                                (TestVirtualizedAccelerator)
``workload_sandboxing``         sandboxed pods isolated (TestWorkloadSandboxing)
``high_performance_networking`` NICs through DRA, attached and used
                                (TestHighPerformanceNetworking)
``disaggregated_inference``     prefill and decode on distinct pods
                                (TestDisaggregatedInference)
``robust_controller``           AI operator, CRDs, webhooks
                                (TestRobustCRDControllerOperation)
==============================  =============================================

The floor every check builds on (requirement modules import these, never each other):

* ``base`` — the check contract: ``@check``, the registry, options, permissions and
  ``CheckContext`` (sub-tests, gated ``step``\\ s, evidence, cancellation, ``sleep``).
* ``predicates`` — what a pod's or node's state means (``node_ready``,
  ``node_schedulable``, ``pod_running``, ``pod_bound``, …), node selectors.
* ``resources`` — what pods request and nodes offer, with the one quantity parser
  (``kaic.cluster.parse_quantity``).
* ``accelerators`` — the one accelerator vendor table and the one node→accelerator
  inventory (DRA ResourceSlices or allocatable).
* ``waits`` — recorded waits and phases, cancellable polling, JSON evidence text.
* ``controllers`` — finding a controller (pods or a renewed Lease), versions, and
  ``try_create`` with what admission said.
* ``endpoints`` — pods' HTTP endpoints, Services' pods, user-given URLs.
* ``sampling`` — spread samples of large inventories (thousands of nodes or exporters).
* ``installed`` — what software the API shows: workloads by image, CRD groups, CSI
  drivers, RuntimeClass handlers, node metadata (``Inventory.find``).
* ``created`` — what a check made in its namespace, kept as evidence and deleted at the
  end (``Created``).
* ``execs`` — commands run in pods, with retries, and probe scripts run until their
  output parses.
* ``pods`` — the restricted security context and a small pod built with it
  (``restricted_pod``).
* ``gateways`` — a Gateway with one HTTP listener, reading Gateway and route status,
  counting where a client pod's requests landed (``tally``).
* ``_metric_names`` — accelerator metric names per vendor (data for
  ``accelerator_metrics``).

No module here imports the Kubernetes client; checks talk to the cluster through
``kaic.cluster.api.ClusterAPI``. Objects a check creates get kaic's labels from the
``TrackingCluster`` the runner gives it, not from the check. ``load_builtin_checks()``
imports every requirement module. Adding a check: docs/checks.md, "Adding a check".
"""

from __future__ import annotations

import importlib
import pkgutil

from kaic.checks.base import REGISTRY, Registry

__all__ = ["HELPER_MODULES", "REGISTRY", "load_builtin_checks", "requirement_modules"]

HELPER_MODULES = frozenset(
    {
        "base",
        "predicates",
        "resources",
        "accelerators",
        "waits",
        "controllers",
        "endpoints",
        "execs",
        "sampling",
        "installed",
        "created",
        "gateways",
        "pods",
    }
)
"""Modules of the shared floor; every other public module is a requirement module."""


def requirement_modules() -> list[str]:
    """The names of the requirement modules of this package (each a requirement id)."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_") and info.name not in HELPER_MODULES
    )


def load_builtin_checks() -> Registry:
    """Import every requirement module of this package (idempotent) and return the
    registry."""
    for name in requirement_modules():
        importlib.import_module(f"{__name__}.{name}")
    return REGISTRY
