"""disaggregated_inference on the lab: llm-d-style prefill and decode Deployments whose
(simulated) vLLM servers are answered by porter at their pod IPs; the decode server asks a
prefill pod over the pod network, and both log the request id for ``kubectl logs``.

PASS on the default lab (``disaggregated-serving``); FAIL with ``colocated-serving``, whose
decode server runs both phases itself, naming that decode pod.
"""

from __future__ import annotations

import json

import pytest
from labtools import LabFactory, run_check_on_lab, sub

from kaic.model import Outcome

try:
    from kaic.lab import Lab
except ImportError:  # pragma: no cover - the lab package without its cluster code
    pytest.skip("kaic.lab.Lab is not available", allow_module_level=True)

pytestmark = pytest.mark.lab


def test_disaggregated_inference_passes_on_the_default_lab(lab: Lab) -> None:
    r = run_check_on_lab(lab, "disaggregated_inference", catalog_version="1.37")
    assert r.outcome is Outcome.PASS, r.reason
    assert any(
        "llm-d in namespace disaggregated-serving" in line
        for line in sub(r, "FrameworkDetected").log
    )
    (line,) = sub(r, "PhasesOnDistinctPods").log
    assert "prefill pod disaggregated-serving/ms-prefill-" in line
    assert "decode pod disaggregated-serving/ms-decode-" in line
    doc = json.loads(next(e.content for e in r.evidence if e.name == "disaggregated.json"))
    assert doc["endpoint"]["found_as"].startswith("Service disaggregated-serving/ms-decode")
    decode = [v for k, v in doc["log_lines"].items() if "/ms-decode-" in k]
    assert decode and "prefill done by disaggregated-serving/ms-prefill-" in decode[0][0]


def test_disaggregated_inference_fails_when_decode_runs_both_phases(
    lab_factory: LabFactory,
) -> None:
    colocated = lab_factory(with_={"colocated-serving"})
    # NOTE: the prefill pod never logs the id here; PhasesOnDistinctPods looks for it
    # as long as the timeout (at most 60 s) allows.
    r = run_check_on_lab(
        colocated,
        "disaggregated_inference",
        catalog_version="1.37",
        options={"disaggregated-timeout": "30"},
    )
    assert r.outcome is Outcome.FAIL, r.reason
    assert sub(r, "PrefillDecodeSeparated").outcome is Outcome.PASS
    assert sub(r, "RequestServed").outcome is Outcome.PASS
    s = sub(r, "PhasesOnDistinctPods")
    assert s.outcome is Outcome.FAIL
    assert "found only in decode pod disaggregated-serving/ms-decode-" in s.reason
    assert "(prefill and decode in one pod)" in s.reason
