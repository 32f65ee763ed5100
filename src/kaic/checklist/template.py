"""``init``: a new PRODUCT.yaml from the official template of a version.

Owns: writing the template verbatim apart from the metadata values given, so that a
checklist starts byte-identical to what the program publishes. Must not invent values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from kaic import catalog as cat
from kaic.checklist import yamlio
from kaic.errors import InputError, UsageError

__all__ = ["METADATA_OPTIONS", "init_checklist", "render_template"]

# CLI option name -> metadata key, in template order.
METADATA_OPTIONS: dict[str, str] = {
    "platform": "platformName",
    "platform_version": "platformVersion",
    "vendor": "vendorName",
    "website_url": "websiteUrl",
    "repo_url": "repoUrl",
    "documentation_url": "documentationUrl",
    "product_logo_url": "productLogoUrl",
    "description": "description",
    "contact_email": "contactEmailAddress",
    "k8s_conformance_url": "k8sConformanceUrl",
}


def render_template(version: str, values: Mapping[str, str]) -> str:
    """The official template of ``version`` with the given metadata values set.

    ``values`` maps metadata keys (``vendorName``…) to text; keys missing from the
    template (``k8sConformanceUrl`` in 1.33, 1.34, 1.36, 1.37) are added at the end of
    metadata. With no values the result is the template byte for byte.
    """
    text = cat.template_text(version)
    given = {k: v for k, v in values.items() if v is not None}
    unknown = set(given) - set(METADATA_OPTIONS.values())
    if unknown:
        raise UsageError(f"unknown metadata key(s): {', '.join(sorted(unknown))}")
    for key, value in given.items():
        _check_value(key, value)
    if "repoUrl" not in given:
        # NOTE: repoUrl is optional; the template's "[Repository URL]" placeholder would fail
        # both validators, an empty value passes them.
        text = _REPO_PLACEHOLDER.sub(r'\g<1>""', text, count=1)
    if not given:
        return text
    loaded = yamlio.load_text(text, f"template {version}")
    doc = loaded.doc
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
        raise InputError(f"the v{version} template has no metadata mapping")  # pragma: no cover
    meta = doc["metadata"]
    for key, value in given.items():
        yamlio.set_key(meta, key, DoubleQuotedScalarString(value))
    return yamlio.dump(doc)


_REPO_PLACEHOLDER = re.compile(r'^(\s*repoUrl:[ \t]*)"\[Repository URL\]"', re.MULTILINE)
_OPTION = {key: "--" + opt.replace("_", "-") for opt, key in METADATA_OPTIONS.items()}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _check_value(key: str, value: str) -> None:
    """Refuse a value that would not survive as one line of UTF-8 text."""
    option = _OPTION.get(key, key)
    if any("\udc80" <= c <= "\udcff" for c in value):
        raise UsageError(
            f"{option}: the value is not valid UTF-8 text (check the terminal's "
            "or the script's encoding)"
        )
    if "\n" in value or "\r" in value:
        raise UsageError(f"{option}: the value must be one line")
    bad = _CONTROL.search(value)
    if bad:
        raise UsageError(
            f"{option}: the value contains the control character U+{ord(bad.group(0)):04X}"
        )


def init_checklist(
    directory: Path, version: str, values: Mapping[str, str], force: bool = False
) -> Path:
    """Write ``directory/PRODUCT.yaml``; refuse to overwrite unless ``force``."""
    key = cat.normalize_version(version)
    cat.load(key)  # unknown versions fail here with a clear message
    folder = directory.absolute().parent.name
    digits = folder[1:].replace(".", "")
    if folder.startswith("v") and digits.isascii() and digits.isdigit() and folder[1:] != key:
        raise UsageError(
            f"--dir is under {folder} but --version is {key}; the folder must be v{key}/<product>"
        )
    target = directory / "PRODUCT.yaml"
    text = render_template(key, values)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        yamlio.replace_file(target, text, force=force)
    except OSError as e:
        raise InputError(f"cannot write {target}: {e.strerror or e}") from e
    return target
