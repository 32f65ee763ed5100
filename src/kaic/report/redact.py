"""Removing secrets from evidence before it is written.

Owns: ``redact_text`` (private keys, JWTs, bearer tokens, ``token:``/``password:``-style
fields) and ``redact_evidence`` (also the ``data``/``stringData`` of Secret objects in
YAML or JSON evidence). Must not decide what is evidence.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

MARK = "<redacted>"

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_FIELD = re.compile(
    r"(?im)^([ \t]*-?[ \t]*[\"']?[\w.-]*(?:token|password|passwd|secret|client-key-data"
    r"|private[_-]?key|api[_-]?key)[\w.-]*[\"']?[ \t]*[:=][ \t]*)(?![\s\[{|>])(?!"
    + re.escape(MARK)
    + r").+$"
)


def redact_text(text: str) -> str:
    """``text`` with credentials replaced by ``<redacted>``."""
    text = _PEM.sub(f"-----BEGIN PRIVATE KEY-----{MARK}-----END PRIVATE KEY-----", text)
    text = _JWT.sub(MARK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MARK, text)
    return _FIELD.sub(lambda m: m.group(1) + MARK, text)


def _redact_object(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_redact_object(o) for o in obj]
    if not isinstance(obj, dict):
        return obj
    if obj.get("kind") == "Secret":
        obj = dict(obj)
        for key in ("data", "stringData"):
            if isinstance(obj.get(key), dict):
                obj[key] = dict.fromkeys(obj[key], MARK)
        return obj
    if isinstance(obj.get("items"), list):
        return {**obj, "items": [_redact_object(o) for o in obj["items"]]}
    return obj


def redact_evidence(content: str, media_type: str = "text/plain") -> str:
    """Redact one piece of evidence; Secret objects keep their keys, lose their values."""
    if "yaml" in media_type:
        try:
            docs = list(yaml.safe_load_all(content))
        except yaml.YAMLError:
            docs = None
        if docs and any(isinstance(d, dict | list) for d in docs):
            content = yaml.safe_dump_all([_redact_object(d) for d in docs], sort_keys=False)
    elif "json" in media_type:
        try:
            doc = json.loads(content)
        except ValueError:
            doc = None
        if isinstance(doc, dict | list):
            content = json.dumps(_redact_object(doc), indent=2)
    return redact_text(content)
