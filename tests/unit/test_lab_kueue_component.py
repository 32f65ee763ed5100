"""The lab's Kueue component: webhook configurations pointed at loopback."""

from __future__ import annotations

import base64
from pathlib import Path

from kaic.lab.components.kueue_controller import LABELS, webhook_configurations

MANIFESTS = """\
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: mutating-webhook-configuration
webhooks:
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system, path: /mutate-batch-v1-job}
  failurePolicy: Fail
  name: mjob.kb.io
  rules:
  - {apiGroups: [batch], apiVersions: [v1], operations: [CREATE], resources: [jobs]}
  sideEffects: None
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system, path: /mutate-ray-io-v1-rayjob}
  name: mrayjob.kb.io
  rules:
  - {apiGroups: [ray.io], apiVersions: [v1], operations: [CREATE], resources: [rayjobs]}
  sideEffects: None
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: validating-webhook-configuration
webhooks:
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system,
              path: /validate-kueue-x-k8s-io-v1beta2-clusterqueue}
  name: vclusterqueue.kb.io
  rules:
  - apiGroups: [kueue.x-k8s.io]
    apiVersions: [v1beta2]
    operations: [CREATE, UPDATE]
    resources: [clusterqueues]
  sideEffects: None
"""


def test_kueue_webhooks_point_at_loopback_with_the_lab_ca(tmp_path: Path) -> None:
    (tmp_path / "config/components/webhook").mkdir(parents=True)
    (tmp_path / "config/components/webhook/manifests.yaml").write_text(MANIFESTS)
    mutating, validating = webhook_configurations(
        9443, b"CA PEM", files=[tmp_path / "config/components/webhook/manifests.yaml"]
    )
    assert mutating["metadata"] == {
        "name": "kueue-mutating-webhook-configuration",
        "labels": LABELS,
    }
    assert validating["metadata"]["name"] == "kueue-validating-webhook-configuration"
    # only Kueue's own kinds and batch/v1 Jobs (the one integration the lab enables)
    assert [w["name"] for w in mutating["webhooks"]] == ["mjob.kb.io"]
    job = mutating["webhooks"][0]
    assert job["clientConfig"] == {
        "url": "https://127.0.0.1:9443/mutate-batch-v1-job",
        "caBundle": base64.b64encode(b"CA PEM").decode(),
    }
    assert job["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "kube-system",
        "kueue-system",
    ]
    cq = validating["webhooks"][0]
    assert cq["clientConfig"]["url"].endswith("/validate-kueue-x-k8s-io-v1beta2-clusterqueue")
    assert "namespaceSelector" not in cq
