"""Seeded, bounded fuzzing of ``kaic checklist validate``, ``kaic checklist fill`` and
``kaic report`` through the CLI: never exit 4, never a traceback, nothing outside the
product folder touched, and no answer a person wrote lost by ``fill`` (without --force)."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from checklist_helpers import write_bundle, write_valid

from kaic.cli.main import main

SEED = 20261201
ROUNDS = 40
TOKENS = [
    '""',
    "null",
    "~",
    "1e309",
    "0o17",
    "2026-01-01",
    "[",
    "]",
    "{",
    "}",
    '"',
    "'",
    "|",
    ">",
    "- ",
    ": ",
    "#",
    "&a",
    "*a",
    "!!binary",
    "\x1b]0;x\x07",
    "\u202e",
    "日本",
    "\t",
    "\r\n",
    "N/A",
    "Implemented",
    "file://junit.xml#T|x",
    "../../x",
    "v1.36/other/x.md",
    "/etc/passwd",
    "junit.xml",
    "e2e.log",
    "results.json",
]
IDS = [
    "gang_scheduling",
    "secure_accelerator_access",
    "cluster_autoscaling",
    "pod_autoscaling",
    "robust_controller",
    "ai_inference",
    "workload_sandboxing",
]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0) if not isinstance(e.code, str) else 2
    out, err = capsys.readouterr()
    return code, out + err


def _mutate(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 4)):
        if not lines:
            break
        i = rng.randrange(len(lines))
        op = rng.randrange(7)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2 and ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {rng.choice(TOKENS)}\n"
        elif op == 3:
            lines[i] = " " * rng.randint(0, 3) + lines[i]
        elif op == 4:
            lines[i] = lines[i].replace("\n", "\r\n")
        elif op == 5:
            cut = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:cut] + rng.choice(TOKENS) + lines[i][cut:]
        else:
            lines = lines[:i]
    out = "".join(lines)
    return ("\ufeff" + out) if rng.random() < 0.1 else out


def _tree(root: Path, skip: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        if Path(dirpath).resolve().is_relative_to(skip.resolve()):
            continue
        for f in files:
            p = Path(dirpath) / f
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _answers(text: str) -> dict[str, tuple[str, str, list[str]]] | None:
    try:
        doc: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    out = {}
    spec = doc.get("spec") if isinstance(doc, dict) else None
    for items in spec.values() if isinstance(spec, dict) else []:
        for it in items if isinstance(items, list) else []:
            if isinstance(it, dict) and isinstance(it.get("id"), str):
                ev = it.get("evidence")
                out.setdefault(
                    it["id"],
                    (
                        str(it.get("status") or ""),
                        str(it.get("notes") or ""),
                        [str(e) for e in ev] if isinstance(ev, list) else [],
                    ),
                )
    return out


def test_validate_fill_and_report_survive_seeded_random_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)
    for n in range(ROUNDS):
        root = tmp_path / str(n)
        version = rng.choice(["1.35", "1.36", "1.37"])
        product = write_valid(root, version)
        (root / "outside.txt").write_text("do not touch\n")
        if rng.random() < 0.5:  # so that fill has to copy the bundle's artifacts
            for name in ("junit.xml", "e2e.log", "results.json"):
                (product.parent / name).unlink(missing_ok=True)
        if rng.random() < 0.2:
            (product.parent / "junit.xml").unlink(missing_ok=True)
            (product.parent / "junit.xml").symlink_to(root / "outside.txt")
        text = _mutate(rng, product.read_text())
        product.write_bytes(text.encode("utf-8", "surrogatepass"))
        before = _tree(root, product.parent)
        results = [
            {
                "requirement_id": rng.choice(IDS),
                "test_name": rng.choice(["TestGangScheduling", "TestX|y", "TestNew\nline", ""]),
                "outcome": rng.choice(["PASS", "FAIL", "SKIP", "ERROR", "MANUAL"]),
                "reason": rng.choice(TOKENS),
                "not_applicable": rng.random() < 0.5,
            }
            for _ in range(rng.randint(0, 4))
        ]
        bundle = write_bundle(root / "bundle", results, catalog_version=version)
        before.update(_tree(bundle, product.parent))
        person = _answers(text)
        for args in (
            ["checklist", "validate", "--offline", str(product)],
            ["checklist", "validate", "--offline", "--format", "json", str(product)],
            ["checklist", "fill", str(product), "--results", str(bundle)],
            ["checklist", "fill", str(product), "--results", str(bundle), "--dry-run"],
            ["checklist", "fill", str(product), "--results", str(bundle), "--force"],
            ["report", str(bundle)],
        ):
            code, output = _run(capsys, *args)
            assert code != 4 and "Traceback" not in output, (n, args, output[-2000:])
            if args[1] == "fill" and "--force" not in args and code == 0 and person is not None:
                after = _answers(product.read_text(encoding="utf-8", errors="replace"))
                assert after is not None, (n, "fill broke the YAML")
                for rid, (status, notes, evidence) in person.items():
                    a = after.get(rid)
                    assert a is not None, (n, rid)
                    assert not status or a[0] == status, (n, rid, status, a[0])
                    assert not notes.strip() or a[1] == notes, (n, rid, notes, a[1])
                    assert all(e in a[2] for e in evidence), (n, rid, evidence, a[2])
        assert _tree(root, product.parent) == before, n
