"""``init``: a new PRODUCT.yaml from the official template of a version.

Owns: writing the template verbatim apart from the metadata values given, so that a
checklist starts byte-identical to what the program publishes. Must not invent values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

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
    if not given:
        return text
    unknown = set(given) - set(METADATA_OPTIONS.values())
    if unknown:
        raise UsageError(f"unknown metadata key(s): {', '.join(sorted(unknown))}")
    loaded = yamlio.load_text(text, f"template {version}")
    doc = loaded.doc
    if not isinstance(doc, CommentedMap) or not isinstance(doc.get("metadata"), CommentedMap):
        raise InputError(f"the v{version} template has no metadata mapping")  # pragma: no cover
    meta: CommentedMap = doc["metadata"]
    for key, value in given.items():
        if "\n" in value or "\r" in value:
            raise UsageError(f"--{key}: the value must be one line")
        yamlio.set_key(meta, key, DoubleQuotedScalarString(value))
    return yamlio.dump(doc)


def init_checklist(directory: Path, version: str, values: Mapping[str, str],
                   force: bool = False) -> Path:
    """Write ``directory/PRODUCT.yaml``; refuse to overwrite unless ``force``."""
    key = cat.normalize_version(version)
    cat.load(key)  # unknown versions fail here with a clear message
    folder = directory.absolute().parent.name
    digits = folder[1:].replace(".", "")
    if folder.startswith("v") and digits.isascii() and digits.isdigit() and folder[1:] != key:
        raise UsageError(f"--dir is under {folder} but --version is {key}; the folder must be"
                         f" v{key}/<product>")
    target = directory / "PRODUCT.yaml"
    if target.exists() and not force:
        raise UsageError(f"{target} exists; pass --force to overwrite it")
    text = render_template(key, values)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        yamlio.write_atomic(target, text)
    except OSError as e:
        raise InputError(f"cannot write {target}: {e.strerror or e}") from e
    return target
