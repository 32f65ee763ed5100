"""Evidence redaction: credentials never reach a bundle, ordinary text is untouched."""

from __future__ import annotations

import json

import pytest

from kaic.report.redact import MARK, redact_evidence, redact_text

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlX2hlcmU"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bearer {JWT}", JWT),
        ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
        ("    token: s3cr3t-value", "s3cr3t-value"),
        ('"password": "hunter2"', "hunter2"),
        ("client-key-data: LS0tLS1CRUdJTg==", "LS0tLS1CRUdJTg=="),
        ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----", "MHcCAQEE"),
    ],
)
def test_credentials_are_replaced(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out and MARK in out


def test_ordinary_evidence_is_untouched() -> None:
    text = "kind: DeviceClass\nmetadata:\n  name: gpu.nvidia.com\nimagePullSecrets:\n- name: a\n"
    assert redact_text(text) == text


def test_secret_objects_keep_their_keys_but_lose_their_values() -> None:
    doc = {
        "kind": "List",
        "items": [
            {
                "kind": "Secret",
                "metadata": {"name": "s"},
                "data": {"ca.crt": "Q0E=", "user": "YWRtaW4="},
            }
        ],
    }
    out = json.loads(redact_evidence(json.dumps(doc), "application/json"))
    assert out["items"][0]["data"] == {"ca.crt": MARK, "user": MARK}
