"""The self-assessment checklist (PRODUCT.yaml): init, fill, validate, status, upgrade.

Owns: everything about PRODUCT.yaml files. Must not run checks, talk to a cluster, or
reach into the internals of ``kaic.report`` or ``kaic.lab``; it reads run bundles only
through their documented format (docs/bundle.md).
"""

from kaic.checklist.fill import FillChange, FillResult, fill_checklist, read_bundle
from kaic.checklist.findings import RULES, Finding, Rule, Severity
from kaic.checklist.lifecycle import (
    CertificationStatus,
    UpgradeResult,
    certification_status,
    upgrade_checklist,
)
from kaic.checklist.members import load_members, parse_members
from kaic.checklist.template import METADATA_OPTIONS, init_checklist, render_template
from kaic.checklist.urls import USER_AGENT, UrlChecker
from kaic.checklist.validate import (
    NEWEST,
    FileReport,
    Report,
    Revision,
    ValidateOptions,
    validate_paths,
)

__all__ = [
    "METADATA_OPTIONS",
    "NEWEST",
    "RULES",
    "USER_AGENT",
    "CertificationStatus",
    "FileReport",
    "FillChange",
    "FillResult",
    "Finding",
    "Report",
    "Revision",
    "Rule",
    "Severity",
    "UpgradeResult",
    "UrlChecker",
    "ValidateOptions",
    "certification_status",
    "fill_checklist",
    "init_checklist",
    "load_members",
    "parse_members",
    "read_bundle",
    "render_template",
    "upgrade_checklist",
    "validate_paths",
]
