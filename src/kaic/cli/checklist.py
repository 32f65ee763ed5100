"""``kaic checklist …``: init, validate, fill, status and upgrade of PRODUCT.yaml."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import click

from kaic import catalog as cat
from kaic import checklist as cl
from kaic.checklist.findings import Finding, Severity
from kaic.checklist.urls import DEFAULT_TIMEOUT_S
from kaic.cli.output import stderr_console
from kaic.errors import ExitCode, UsageError

PATH = click.Path(path_type=Path, dir_okay=True, file_okay=True)


@click.group("checklist")
def checklist_group() -> None:
    """Write, fill and validate the self-assessment checklist (PRODUCT.yaml)."""


@checklist_group.command("init")
@click.option(
    "--version",
    "version",
    default=None,
    help="Template version, e.g. 1.36 (default: from --dir's vX.Y, else newest).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The product directory, vX.Y/<product>.",
)
@click.option("--vendor", help="vendorName: the CNCF member name, exactly.")
@click.option("--platform", help="platformName.")
@click.option("--platform-version", help="platformVersion (not the Kubernetes version).")
@click.option("--website-url", help="websiteUrl.")
@click.option("--repo-url", help="repoUrl (optional; needed if open source).")
@click.option("--documentation-url", help="documentationUrl.")
@click.option("--product-logo-url", help="productLogoUrl (SVG, EPS or AI).")
@click.option("--description", help="description: one sentence.")
@click.option("--contact-email", help="contactEmailAddress.")
@click.option(
    "--k8s-conformance-url", help="k8sConformanceUrl: the product's cncf/k8s-conformance folder."
)
@click.option("--force", is_flag=True, help="Replace an existing PRODUCT.yaml (a backup is kept).")
def init_cmd(version: str | None, directory: Path, force: bool, **values: str | None) -> None:
    """Write PRODUCT.yaml from the official template of a version."""
    if version is None:
        folder = directory.absolute().parent.name
        try:
            version = cat.normalize_version(folder) if folder.startswith("v") else None
        except UsageError:
            version = None
        if version not in cat.versions():
            version = cat.versions()[-1]
    meta = {cl.METADATA_OPTIONS[k]: v for k, v in values.items() if v is not None}
    before = set(directory.glob("PRODUCT.yaml.bak*"))
    target = cl.init_checklist(directory, version, meta, force=force)
    key = cat.normalize_version(version)
    saved = sorted(set(directory.glob("PRODUCT.yaml.bak*")) - before)
    click.echo(
        f"wrote {target} (template v{key})" + (f" (backup: {saved[0]})" if saved else ""), err=True
    )
    if directory.absolute().parent.name != f"v{key}":
        click.echo(
            f"kaic: warning: submissions live in v{key}/<product>/; the validator reads "
            "the version from that folder",
            err=True,
        )


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def safe(text: str) -> str:
    """``text`` with terminal control characters (ESC, BEL, CR, C1, bidi overrides, …)
    written as ``\\xNN``/``\\uNNNN`` escapes, so a checklist cannot drive the terminal."""

    def esc(m: re.Match[str]) -> str:
        c = ord(m.group(0))
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"

    return _CONTROL.sub(esc, text)


def _render_text(report: cl.Report) -> None:
    for f in report.files:
        for x in f.findings:
            click.echo(
                safe(f"{x.path}:{x.line}:{x.column}: {x.severity.value}: {x.message} [{x.rule}]")
            )
            if x.hint:
                click.echo(safe(f"    hint: {x.hint}"))
    for f in report.files:
        counts = {s: sum(1 for x in f.findings if x.severity is s) for s in Severity}
        verdict = "valid" if f.valid else ("unreadable" if f.unreadable else "invalid")
        version = f" (v{f.version})" if f.version else ""
        click.echo(
            safe(
                f"{f.path}{version}: {verdict}: {counts[Severity.ERROR]} error(s), "
                f"{counts[Severity.WARNING]} warning(s), "
                f"{counts[Severity.NOT_CHECKED]} not checked"
            ),
            err=True,
        )


def _gh_escape(text: str, prop: bool = False) -> str:
    text = safe(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def _render_github(report: cl.Report) -> None:
    kinds = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOT_CHECKED: "notice"}
    for f in report.files:
        for x in f.findings:
            msg = x.message + (f" (hint: {x.hint})" if x.hint else "")
            click.echo(
                f"::{kinds[x.severity]} file={_gh_escape(x.path, True)},line={x.line},"
                f"col={x.column},title={_gh_escape(x.rule, True)}::{_gh_escape(msg)}"
            )


def _finding_line(x: Finding) -> str:
    return f"{x.path}:{x.line}:{x.column}: {x.severity.value}: {x.message} [{x.rule}]"


@checklist_group.command("validate")
@click.argument("paths", nargs=-1, required=True, type=PATH)
@click.option(
    "--offline", is_flag=True, help="Do not check URLs; they are reported as not checked."
)
@click.option(
    "--members",
    "members_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A copy of the CNCF landscape.yml to check vendorName.",
)
@click.option(
    "--official-revision",
    "revision",
    type=click.Choice([r.value for r in cl.Revision]),
    default=cl.NEWEST.value,
    show_default=True,
    help="The official validator revision whose verdict to reproduce.",
)
@click.option(
    "--strict",
    is_flag=True,
    hidden=True,
    help="Kept for compatibility: the newest official revision, the default.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 300),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds per URL request.",
)
def validate_cmd(
    paths: tuple[Path, ...],
    offline: bool,
    members_file: Path | None,
    revision: str,
    strict: bool,
    fmt: str,
    timeout: float,
) -> int:
    """Validate PRODUCT.yaml files: exit 0 valid, 1 invalid, 2 unreadable input."""
    members = cl.load_members(members_file) if members_file else None
    opts = cl.ValidateOptions(
        offline=offline,
        members=members,
        strict=strict,
        url_checker=cl.UrlChecker(timeout=timeout),
        revision=cl.Revision(revision),
    )
    # NOTE: a product directory stands for the PRODUCT.yaml inside it.
    files = [
        p / "PRODUCT.yaml" if p.is_dir() and (p / "PRODUCT.yaml").is_file() else p for p in paths
    ]
    report = cl.validate_paths(files, opts)
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    elif fmt == "github":
        _render_github(report)
    else:
        _render_text(report)
    return report.exit_code()


@checklist_group.command("fill")
@click.argument("product", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--results",
    "bundle",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="A kaic run bundle directory (with run.json).",
)
@click.option("--force", is_flag=True, help="Overwrite answers a person wrote (a backup is kept).")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
def fill_cmd(product: Path, bundle: Path, force: bool, dry_run: bool) -> int:
    """Answer PRODUCT.yaml from a kaic run: status, evidence and notes."""
    res = cl.fill_checklist(product, bundle, force=force, dry_run=dry_run)
    err = stderr_console()
    for c in res.changes:
        err.print(
            f"  {c.action:<9} {c.requirement_id}: {c.detail}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    for w in res.warnings:
        click.echo(f"kaic: warning: {w}", err=True)
    for p in res.copied:
        click.echo(f"copied {p}", err=True)
    if res.written:
        click.echo(f"wrote {product} (backup: {res.backup})", err=True)
    elif dry_run:
        click.echo("dry run: nothing written", err=True)
    else:
        click.echo(f"{product}: nothing to change", err=True)
    if res.conflicts:
        click.echo(
            f"kaic: warning: {len(res.conflicts)} answer(s) kept; pass --force to overwrite them",
            err=True,
        )
    return int(ExitCode.OK)


def _parse_date(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-03-31") from None


@checklist_group.command("status")
@click.argument("product", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--certified-on",
    required=True,
    callback=_parse_date,
    help="The date the submission was merged (YYYY-MM-DD).",
)
@click.option("--today", callback=_parse_date, default=None, hidden=True)
@click.option(
    "-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def status_cmd(product: Path, certified_on: dt.date, today: dt.date | None, fmt: str) -> int:
    """Validity of a certification (one year) and the renewal to-do list."""
    st = cl.certification_status(product, certified_on, today)
    if fmt == "json":
        click.echo(json.dumps(st.as_dict(), indent=2))
    else:
        state = (
            f"expired {-st.days_left} day(s) ago" if st.expired else f"{st.days_left} day(s) left"
        )
        click.echo(f"checklist:        {st.path} (template v{st.version})")
        click.echo(f"anchored to:      Kubernetes {st.kubernetes_version}")
        click.echo(f"certified on:     {st.certified_on.isoformat()}")
        click.echo(f"valid until:      {st.valid_until.isoformat()} ({state})")
        if not st.newer_versions:
            click.echo("newer templates:  none; renew on the same version")
        else:
            click.echo(f"newer templates:  {', '.join('v' + v for v in st.newer_versions)}")
            click.echo("renewal to-do:")
            for t in st.renewal:
                click.echo(f"  v{t['version']}  {t['requirement_id']}: {t['todo']}")
    return int(ExitCode.NOT_MET if st.expired else ExitCode.OK)


@checklist_group.command("upgrade")
@click.argument("product", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--to", "to", required=True, help="The newer template version, e.g. 1.37.")
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write here instead of in place (in place keeps a backup).",
)
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--force", is_flag=True, help="Replace an existing --output file (a backup is kept).")
def upgrade_cmd(product: Path, to: str, output: Path | None, dry_run: bool, force: bool) -> int:
    """Move a filled checklist to a newer template, keeping unchanged answers."""
    res = cl.upgrade_checklist(product, to, output, dry_run=dry_run, force=force)
    click.echo(f"v{res.from_version} -> v{res.to_version}")
    for rid in res.kept:
        click.echo(f"  kept     {rid}")
    for rid in res.added:
        click.echo(f"  added    {rid} (new: fill it in)")
    for rid in res.removed:
        click.echo(f"  removed  {rid} (no longer in v{res.to_version})")
    for line in res.review:
        click.echo(f"  review   {line}")
    for line in res.notes:
        click.echo(f"  note     {line}")
    if dry_run:
        click.echo("dry run: nothing written", err=True)
    else:
        click.echo(
            f"wrote {res.path}" + (f" (backup: {res.backup})" if res.backup else ""), err=True
        )
    return int(ExitCode.OK)
