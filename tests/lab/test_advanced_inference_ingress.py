"""advanced_inference_ingress on the lab: FAIL only. The lab's Gateway implementation is
the real Traefik, which does not implement InferencePool backends, and every
implementation that does (Envoy Gateway, kgateway, Istio, GKE, NGINX Gateway Fabric,
agentgateway) has its data plane in C++ or Rust, none a Go module the lab can build
(docs/lab.md, "The Gateway API data plane: Traefik"). The PASS is shown on the fake
cluster (tests/unit/checks/test_advanced_inference_ingress.py).

FAIL on the default lab, naming the HTTPRoute and Traefik's answer to its InferencePool
backendRef; FAIL at InferenceAPIServed on a lab without the inference extension's CRDs.
"""

from __future__ import annotations

import pytest
from labtools import LabFactory, run_check_on_lab, sub

from kaic.model import Outcome

try:
    from kaic.lab import Lab
except ImportError:  # pragma: no cover - the lab package without its cluster code
    pytest.skip("kaic.lab.Lab is not available", allow_module_level=True)

pytestmark = pytest.mark.lab


def test_advanced_inference_ingress_fails_on_the_default_lab_naming_traefiks_route_answer(
    lab: Lab,
) -> None:
    r = run_check_on_lab(
        lab,
        "advanced_inference_ingress",
        catalog_version="1.37",
        options={"inference-status-timeout": "60"},
    )
    assert r.outcome is Outcome.FAIL, r.reason
    assert sub(r, "InferenceAPIServed").outcome is Outcome.PASS
    assert sub(r, "GatewayClassAccepted").outcome is Outcome.PASS
    assert sub(r, "ModelServersReady").outcome is Outcome.PASS
    pool = sub(r, "PoolAcceptedByGateway")
    assert pool.outcome is Outcome.FAIL
    # Traefik accepts the route but cannot resolve an InferencePool backend; a Traefik
    # that wrote no parent status at all is reported as such (both are FAILs).
    assert pool.reason.startswith("HTTPRoute kaic-"), pool.reason
    assert "traefik.io/gateway-controller" in pool.reason
    assert (
        "ResolvedRefs=False (InvalidKind" in pool.reason
        and pool.reason.endswith("the Gateway implementation does not route to InferencePool")
    ) or "no controller wrote a status" in pool.reason, pool.reason
    assert sub(r, "RequestsReachPool").outcome is Outcome.SKIP
    assert sub(r, "PickerFollowsMetrics").outcome is Outcome.SKIP


def test_advanced_inference_ingress_fails_without_the_inference_extension_crds(
    lab_factory: LabFactory,
) -> None:
    bare = lab_factory(without={"inference-extension"}, accelerators="none")
    r = run_check_on_lab(bare, "advanced_inference_ingress", catalog_version="1.37")
    assert r.outcome is Outcome.FAIL
    served = sub(r, "InferenceAPIServed")
    assert served.outcome is Outcome.FAIL
    assert served.reason.startswith(
        "the API server does not serve InferencePool in inference.networking.k8s.io/v1"
    )
    assert sub(r, "PoolAcceptedByGateway").outcome is Outcome.SKIP
