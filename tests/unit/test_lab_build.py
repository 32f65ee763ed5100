"""The lab's build (``kaic.lab.build``) against a stand-in ``go`` command that records
its calls and writes what the real one would: go.mod, module sources, binaries."""

from __future__ import annotations

import json
import os
import stat
import sys
import tomllib
from pathlib import Path

import pytest

from kaic.errors import LabError
from kaic.lab.build import Builder
from kaic.lab.programs import Catalog, parse

FAKE_GO = r"""#!PYTHON
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_GO_CALLS"], "a") as f:
    f.write(json.dumps({"cwd": os.getcwd(), "args": args,
                        "gobin": os.environ.get("GOBIN", "")}) + "\n")
fail = os.environ.get("FAKE_GO_FAIL", "")
if fail and " ".join(args).startswith(fail):
    print("go: downloading example.com/x v1.0.0", file=sys.stderr)
    print("build failed: undefined: foo.Bar", file=sys.stderr)
    sys.exit(1)
mod = Path("go.mod")
if args[:2] == ["mod", "init"]:
    mod.write_text(f"module {args[2]}\n")
elif args[:2] == ["mod", "edit"]:
    mod.write_text(mod.read_text() + "// edit " + " ".join(args[2:]) + "\n")
elif args[:2] == ["get", "-tool"]:
    mod.write_text(mod.read_text() + "".join(f"tool {a}\n" for a in args[2:]))
    Path("go.sum").write_text("sum\n")
elif args[:2] == ["list", "-m"]:
    print("v3.6.8")
elif args[:3] == ["mod", "download", "-json"]:
    d = Path(os.environ["FAKE_GO_MODCACHE"]) / args[3].replace("/", "_")
    (d / "pkg").mkdir(parents=True, exist_ok=True)
    (d / "pkg" / "main.go").write_text('listen(":%d")\n')
    print(json.dumps({"Dir": str(d)}))
elif args[0] == "install":
    for pkg in [a for a in args[1:] if not a.startswith("-")]:
        name = pkg.rstrip("/").split("/")[-1]
        if name.startswith("v") and name[1:].isdigit():
            name = pkg.rstrip("/").split("/")[-2]
        p = Path(os.environ["GOBIN"]) / name
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)
"""

PROGRAMS = """
[kubernetes]
default = "v1.36.2"
staging.0 = ["api", "client-go"]
staging.36 = ["streaming"]

[program.kubernetes]
module = "k8s.io/kubernetes"
version = "kube"
packages = ["cmd/kube-apiserver", "cmd/kubectl"]
group = "kube"
ldflags = ["-X k8s.io/component-base/version.gitVersion={kube}"]

[program.etcd]
module = "go.etcd.io/etcd/server/v3"
version = "graph"
follows = "go.etcd.io/etcd/client/v3"
packages = [""]
binaries = { "" = "etcd" }
group = "kube"

[program.ctl]
module = "example.com/ctl"
version = "v1.2.3"
packages = ["cmd/ctl"]
group = "kube"
kube_min = 36
tags = ["lean"]

[[program.ctl.patch]]
file = "pkg/main.go"
find = 'listen(":%d")'
replace = 'listen("127.0.0.1:%d")'

[program.crds]
module = "example.com/crds"
version = "v0.1.0"
packages = []
manifests.crds = ["config/*.yaml"]
"""


def catalog(text: str = PROGRAMS) -> Catalog:
    return parse(tomllib.loads(text))


@pytest.fixture()
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    go = bindir / "go"
    go.write_text(FAKE_GO.replace("PYTHON", sys.executable))
    go.chmod(go.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GO_CALLS", str(calls))
    monkeypatch.setenv("FAKE_GO_MODCACHE", str(tmp_path / "modcache"))
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "modcache"))
    monkeypatch.setenv("KAIC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KAIC_SOURCE_TREE", str(tmp_path / "tree"))
    monkeypatch.delenv("KAIC_LAB_BIN_DIR", raising=False)
    return calls


def calls(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [json.loads(line)["args"] for line in path.read_text().splitlines()]


def builder(cat: Catalog, kube: str = "v1.36.2") -> tuple[Builder, list[str]]:
    said: list[str] = []
    return Builder(kube, say=said.append, programs=cat), said


def test_every_program_is_built_into_one_bin_dir_under_its_installed_name(
    fake_go: Path, tmp_path: Path
) -> None:
    b, _ = builder(catalog())
    result = b.build()
    assert sorted(result.built) == ["ctl", "etcd", "kubernetes"]
    names = sorted(p.name for p in b.bin.iterdir())
    assert names == ["ctl", "etcd", "kube-apiserver", "kubectl"]
    stamp = json.loads((b.root / "stamps" / "etcd.json").read_text())
    assert stamp["version"] == "v3.6.8" and stamp["group"] == "kube"
    # one shared wrapper: staging modules replaced, every program a tool of it
    gomod = (b.root / "src" / "kube" / "go.mod").read_text()
    assert "-replace=k8s.io/client-go=k8s.io/client-go@v0.36.2" in gomod
    assert "-replace=k8s.io/streaming=k8s.io/streaming@v0.36.2" in gomod
    assert "tool k8s.io/kubernetes/cmd/kube-apiserver@v1.36.2" in gomod
    assert "tool go.etcd.io/etcd/server/v3@v3.6.8" in gomod
    installs = [c for c in calls(fake_go) if c[0] == "install"]
    assert [c[-1] for c in installs] == [
        "k8s.io/kubernetes/cmd/kubectl",
        "go.etcd.io/etcd/server/v3",
        "example.com/ctl/cmd/ctl",
    ]
    assert "-tags=lean" in installs[2] and not any("-tags" in a for a in installs[0])
    assert any("gitVersion=v1.36.2" in a for a in installs[0])


def test_a_second_build_builds_nothing(fake_go: Path) -> None:
    b, said = builder(catalog())
    b.build()
    before = len(calls(fake_go))
    result = b.build()
    assert result.built == {} and sorted(result.current) == ["ctl", "etcd", "kubernetes"]
    assert not [c for c in calls(fake_go)[before:] if c[0] in ("install", "get")]
    assert any("up to date" in s for s in said)


def test_bumping_one_version_rebuilds_only_that_program(fake_go: Path) -> None:
    builder(catalog())[0].build()
    b, _ = builder(catalog(PROGRAMS.replace('"v1.2.3"', '"v1.2.4"')))
    assert b.build().built.keys() == {"ctl"}
    assert "tool example.com/ctl/cmd/ctl@v1.2.4" in (b.root / "src/kube/go.mod").read_text()


def test_a_current_pin_is_used_and_a_stale_one_is_resolved_anew(
    fake_go: Path, tmp_path: Path
) -> None:
    b, said = builder(catalog())
    b.build(pin=True)
    pin = tmp_path / "tree/lab/versions/v1.36.2/kube"
    assert sorted(p.name for p in pin.iterdir()) == ["go.mod", "go.sum", "pin.json"]
    (pin / "go.mod").write_text((pin / "go.mod").read_text() + "// pinned\n")
    # a fresh cache: the pinned graph is copied, nothing is resolved
    import shutil

    shutil.rmtree(tmp_path / "cache")
    fake_go.unlink()
    b, said = builder(catalog())
    b.build()
    assert not [c for c in calls(fake_go) if c[0] == "get"]
    assert "// pinned" in (b.root / "src/kube/go.mod").read_text()
    # another description: the pin no longer applies
    b, said = builder(catalog(PROGRAMS.replace('"v1.2.3"', '"v1.2.4"')))
    b.build()
    assert any("pinned module graph" in s and "resolving anew" in s for s in said)
    assert [c for c in calls(fake_go) if c[0] == "get"]


def test_patches_edit_a_copy_of_the_module_and_a_replace_wires_it_in(fake_go: Path) -> None:
    b, _ = builder(catalog())
    b.build()
    patched = b.root / "src/kube/patched/ctl/pkg/main.go"
    assert patched.read_text() == 'listen("127.0.0.1:%d")\n'
    gomod = (b.root / "src/kube/go.mod").read_text()
    assert "-replace=example.com/ctl=./patched/ctl" in gomod


def test_a_patch_that_no_longer_matches_is_an_error_naming_the_file(fake_go: Path) -> None:
    b, _ = builder(catalog(PROGRAMS.replace("find = 'listen(\":%d\")'", "find = 'serve()'")))
    with pytest.raises(
        LabError,
        match=r"ctl: patch of pkg/main.go expected 'serve\(\)' "
        "exactly once, found it 0 times",
    ):
        b.build()


def test_a_failing_go_command_is_one_error_with_its_last_message(
    fake_go: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_GO_FAIL", "install")
    b, _ = builder(catalog())
    with pytest.raises(LabError) as e:
        b.build()
    assert "exited 1: build failed: undefined: foo.Bar" in str(e.value)
    assert str(b.log) in str(e.value)


def test_older_labs_leave_out_programs_and_build_own_modules(fake_go: Path) -> None:
    cat = catalog(
        PROGRAMS
        + """
[program.agent]
module = "example.com/agent"
version = "v0.8.0"
packages = ["cmd/agent"]
group = "kube"
kube_own = 36
"""
    )
    b, _ = builder(cat, "v1.34.3")
    assert {g.name: [p.name for p in g.members] for g in b.groups()} == {
        "kube": ["kubernetes", "etcd"],
        "agent": ["agent"],
    }
    with pytest.raises(LabError, match=r"ctl is not built for Kubernetes v1\.34\.3"):
        b.build(["ctl"])
    assert sorted(b.build().built) == ["agent", "etcd", "kubernetes"]
    own = (b.root / "src/agent/go.mod").read_text()
    assert "-replace=k8s.io" not in own and "tool example.com/agent/cmd/agent@v0.8.0" in own
    kube = (b.root / "src/kube/go.mod").read_text()
    assert "-godebug default=go1.24" in kube and "k8s.io/streaming" not in kube


def test_building_needs_go(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("KAIC_CACHE", str(tmp_path / "cache"))
    with pytest.raises(LabError, match="Go is needed"):
        builder(catalog())[0].build()


def test_a_programs_own_replacements_and_patched_copy_are_in_place_before_resolving(
    fake_go: Path,
) -> None:
    cat = catalog(
        PROGRAMS
        + """
[program.proxy]
module = "example.com/proxy/v3"
version = "v3.7.0"
packages = ["cmd/proxy"]
group = "own"
replace = { "example.com/auth" = "example.com/auth-fork@v0.4.1" }

[[program.proxy.patch]]
file = "pkg/main.go"
find = 'listen(":%d")'
replace = 'listen("127.0.0.1:%d")'
"""
    )
    b, _ = builder(cat)
    assert "proxy" in b.build().built
    gomod = (b.root / "src/proxy/go.mod").read_text()
    replace_at = gomod.index("-replace=example.com/auth=example.com/auth-fork@v0.4.1")
    patched_at = gomod.index("-replace=example.com/proxy/v3=./patched/proxy")
    # the graph is resolved with both in place (a patch may edit the program's go.mod)
    assert replace_at < patched_at < gomod.index("tool example.com/proxy/v3/cmd/proxy@v3.7.0")
    assert "-replace=example.com/auth" not in (b.root / "src/kube/go.mod").read_text()


def test_a_replacement_must_name_an_exact_version() -> None:
    bad = PROGRAMS.replace(
        'tags = ["lean"]', 'tags = ["lean"]\nreplace = { "example.com/a" = "example.com/b" }'
    )
    with pytest.raises(LabError, match=r"replace of example\.com/a must be 'module@exact-version'"):
        catalog(bad)
