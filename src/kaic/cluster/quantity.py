"""Kubernetes resource quantities (``500m``, ``64Gi``, ``2k``), read by the client's own
parser so that kaic and the API server agree on what a quantity means.

Owns: ``parse_quantity``. Must not decide pass or fail.
"""

from __future__ import annotations

from decimal import Decimal


def parse_quantity(value: str | int | float | Decimal | None) -> Decimal:
    """A Kubernetes quantity as a Decimal; 0 when absent (``None`` or ``""``).

    Raises ``ValueError`` for text that is not a quantity."""
    # NOTE: imported on first use: the client package takes about half a second to import,
    # and commands that never talk to a cluster must not pay for it.
    from kubernetes.utils.quantity import parse_quantity as client_parse_quantity

    if value is None or (isinstance(value, str) and not value.strip()):
        return Decimal(0)
    text = value.strip() if isinstance(value, str) else value
    parsed: Decimal = client_parse_quantity(text)
    return parsed
