"""CNCF member names from a local copy of the CNCF landscape (``landscape.yml``).

Owns: reading the items of the ``CNCF Members`` category, with the `` (member)`` and
`` (supporter)`` suffixes stripped, as the official validator does. Must not fetch
anything: the file is given by the user (``--members``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kaic.errors import InputError

_SUFFIXES = (" (member)", " (supporter)")
MAX_LANDSCAPE_BYTES = 64 << 20


def parse_members(text: str, source: str = "landscape") -> frozenset[str]:
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"{source}: not valid YAML: {' '.join(str(e).split())}") from e
    categories = data.get("landscape") if isinstance(data, dict) else None
    if not isinstance(categories, list):
        raise InputError(f"{source}: no 'landscape' list (is this the CNCF landscape.yml?)")
    for cat in categories:
        if not isinstance(cat, dict) or cat.get("name") != "CNCF Members":
            continue
        subs = cat.get("subcategories") or []
        if not isinstance(subs, list):
            raise InputError(
                f"{source}: 'subcategories' of 'CNCF Members' is a "
                f"{type(subs).__name__}, not a list"
            )
        names: set[str] = set()
        for sub in subs:
            if not isinstance(sub, dict):
                continue
            items = sub.get("items") or []
            if not isinstance(items, list):
                raise InputError(
                    f"{source}: 'items' of a 'CNCF Members' subcategory is a "
                    f"{type(items).__name__}, not a list"
                )
            for item in items:
                name = item.get("name") if isinstance(item, dict) else None
                if not isinstance(name, str):
                    continue
                for suffix in _SUFFIXES:
                    name = name.removesuffix(suffix)
                name = name.strip()
                if name:
                    names.add(name)
        return frozenset(names)
    raise InputError(f"{source}: could not find 'CNCF Members' category in landscape data")


def load_members(path: Path) -> frozenset[str]:
    """The CNCF member names in the landscape file at ``path``."""
    try:
        if path.stat().st_size > MAX_LANDSCAPE_BYTES:
            raise InputError(f"{path}: larger than {MAX_LANDSCAPE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text") from e
    return parse_members(text, str(path))
