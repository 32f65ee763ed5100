"""``kaic catalog …``: browse and compare the requirement catalog."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from kaic import catalog as cat
from kaic.cli.output import OUTPUT_CHOICE, emit_structured, emit_table, stdout_console
from kaic.model import PROFILES, Level, Requirement


def requirement_dict(r: Requirement) -> dict[str, Any]:
    """The stable JSON/YAML shape of a requirement (docs/cli.md)."""
    return {
        "id": r.id,
        "category": r.category,
        "level": r.level.value,
        "conditional": r.conditional,
        "automated": r.automated,
        "test_name": r.test_name,
        "test_status": r.test_status,
        "kar": r.kar,
        "description": r.description,
        "how_we_test": r.how_we_test,
        "profile": r.profile,
        **({"section": r.section} if r.is_extended else {}),
    }


@click.group("catalog")
def catalog_group() -> None:
    """Browse the versioned requirement catalog."""


@catalog_group.command("versions")
@click.option("-o", "--output", "fmt", type=OUTPUT_CHOICE, default="text", show_default=True)
def versions_cmd(fmt: str) -> None:
    """List the catalog versions kaic knows."""
    rows: list[dict[str, Any]] = []
    for v in cat.versions():
        c = cat.load(v)
        must = sum(1 for r in c.requirements if r.level is Level.MUST)
        rows.append({"version": v, "must": must, "should": len(c.requirements) - must})
    if fmt == "text":
        emit_table(
            ["VERSION", "MUST", "SHOULD"],
            [[str(r["version"]), str(r["must"]), str(r["should"])] for r in rows],
        )
    else:
        emit_structured({"versions": rows}, fmt)


@catalog_group.command("list")
@click.option(
    "--version",
    "version",
    default=cat.versions()[-1],
    show_default=True,
    help="Catalog version, e.g. 1.36 or v1.36.2.",
)
@click.option(
    "--level",
    type=click.Choice(["must", "should"], case_sensitive=False),
    default=None,
    help="Only requirements of this level.",
)
@click.option(
    "--profile",
    type=click.Choice(PROFILES, case_sensitive=False),
    default="official",
    show_default=True,
    help="official: the checklist's requirements; extended: kaic's informative profile; all",
)
@click.option("-o", "--output", "fmt", type=OUTPUT_CHOICE, default="text", show_default=True)
def list_cmd(version: str, level: str | None, profile: str, fmt: str) -> None:
    """List the requirements of a catalog version."""
    c = cat.load(version)
    reqs = [
        r for r in c.profile(profile.lower()) if level is None or r.level.value == level.upper()
    ]
    if fmt == "text":
        emit_table(
            ["ID", "CATEGORY", "LEVEL", "TEST", "AUTOMATED"],
            [
                [
                    r.id,
                    r.category,
                    r.level.value + (" (conditional)" if r.conditional else ""),
                    r.test_name or "-",
                    "yes" if r.automated else "manual",
                ]
                for r in reqs
            ],
            title=None,
        )
    else:
        emit_structured(
            {"version": c.version, "requirements": [requirement_dict(r) for r in reqs]}, fmt
        )


@catalog_group.command("show")
@click.argument("requirement_id")
@click.option("--version", "version", default=cat.versions()[-1], show_default=True)
@click.option("-o", "--output", "fmt", type=OUTPUT_CHOICE, default="text", show_default=True)
def show_cmd(requirement_id: str, version: str, fmt: str) -> None:
    """Show one requirement in full."""
    c = cat.load(version)
    r = c.lookup(requirement_id)
    if fmt != "text":
        emit_structured({"version": c.version, **requirement_dict(r)}, fmt)
        return
    con = stdout_console()
    con.print(f"[bold]{r.id}[/bold]  (catalog v{c.version})")
    pairs = [
        ("category", r.category),
        (
            "level",
            r.level.value
            + (" (conditional: N/A allowed with a justification)" if r.conditional else ""),
        ),
        ("test", f"{r.test_name or '-'} ({r.test_status or 'none'})"),
        ("automated by kaic", "yes" if r.automated else "no (manual evidence)"),
        ("KAR", r.kar or "-"),
    ]
    for k, v in pairs:
        con.print(f"  {k + ':':<19}{v}", markup=False)
    if r.is_extended:
        con.print(f"  {'profile:':<19}extended (informative; never in PRODUCT.yaml)", markup=False)
        con.print(f"  {'document section:':<19}{r.section}", markup=False)
    con.print(
        "\ndescription (kaic's words):" if r.is_extended else "\ndescription (official):",
        markup=False,
    )
    con.print(f"  {r.description}", markup=False)
    con.print("\nhow kaic tests it:", markup=False)
    con.print(f"  {r.how_we_test}", markup=False)
    if r.manual_evidence:
        con.print("\nevidence to attach by hand:", markup=False)
        con.print(f"  {r.manual_evidence}", markup=False)


@catalog_group.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("-o", "--output", "fmt", type=OUTPUT_CHOICE, default="text", show_default=True)
def diff_cmd(a: str, b: str, fmt: str) -> None:
    """Show what changes from catalog version A to version B."""
    changes = cat.diff(a, b)
    va, vb = cat.load(a).version, cat.load(b).version
    if fmt != "text":
        emit_structured({"from": va, "to": vb, "changes": [asdict(c) for c in changes]}, fmt)
        return
    con = stdout_console()
    if not changes:
        con.print(f"no changes from v{va} to v{vb}")
        return
    con.print(f"{len(changes)} change(s) from v{va} to v{vb}:", markup=False)
    for c in changes:
        if c.kind == "added":
            con.print(f"  + {c.requirement_id} added ({c.after})", markup=False)
        elif c.kind == "removed":
            con.print(f"  - {c.requirement_id} removed (was {c.before})", markup=False)
        elif c.kind == "level_changed":
            con.print(f"  ~ {c.requirement_id} level {c.before} -> {c.after}", markup=False)
        elif c.kind == "category_changed":
            con.print(f"  ~ {c.requirement_id} category {c.before} -> {c.after}", markup=False)
        else:
            con.print(f"  ~ {c.requirement_id} description changed", markup=False)
            con.print(f"      was: {c.before}", markup=False)
            con.print(f"      now: {c.after}", markup=False)
