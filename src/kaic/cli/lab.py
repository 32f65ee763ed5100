"""``kaic lab …``: the local lab cluster (docs/lab.md)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from kaic.cli.output import OUTPUT_CHOICE, emit_structured, emit_table
from kaic.errors import ExitCode, LabError
from kaic.lab import Lab, LabOptions, all_components
from kaic.lab.options import ACCELERATOR_MODES, default_version
from kaic.lab.proc import clean_env


def _names(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(n.strip() for v in values for n in v.split(",") if n.strip())


def _say(message: str) -> None:
    click.echo(f"kaic: {message}", err=True)


_name_option = click.option(
    "--name",
    default="default",
    show_default=True,
    help="Lab name; labs with different names run side by side.",
)
_state_option = click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="State directory [default: ~/.cache/kaic/lab/NAME].",
)


def _load(name: str, state_dir: Path | None) -> Lab:
    return Lab.load(name, state_dir)


@click.group("lab")
def lab_group() -> None:
    """A local Kubernetes cluster of real upstream binaries with simulated GPUs."""


@lab_group.command("up")
@_name_option
@click.option(
    "--version",
    "version",
    default=None,
    help="Kubernetes version of the binaries [default: $KAIC_KUBE_VERSION or "
    "the default of programs.toml].",
)
@click.option("--nodes", type=int, default=2, show_default=True, help="GPU nodes.")
@click.option(
    "--cpu-nodes", type=int, default=1, show_default=True, help="Nodes without accelerators."
)
@click.option("--gpus-per-node", type=int, default=8, show_default=True)
@click.option(
    "--accelerators",
    type=click.Choice(ACCELERATOR_MODES),
    default="both",
    show_default=True,
    help="How GPUs are offered: DRA ResourceSlices, device-plugin extended "
    "resources, both, or none.",
)
@click.option(
    "--without",
    "without",
    multiple=True,
    metavar="NAME[,NAME…]",
    help="Leave out optional components (see `kaic lab components`).",
)
@click.option(
    "--with",
    "with_",
    multiple=True,
    metavar="NAME[,NAME…]",
    help="Add optional components that are off by default.",
)
@_state_option
@click.option(
    "--build/--no-build",
    default=False,
    show_default=True,
    help="Build missing binaries first (needs the source tree and Go).",
)
def up_cmd(
    name: str,
    version: str | None,
    nodes: int,
    cpu_nodes: int,
    gpus_per_node: int,
    accelerators: str,
    without: tuple[str, ...],
    with_: tuple[str, ...],
    state_dir: Path | None,
    build: bool,
) -> None:
    """Start a lab (or repair a running one) and wait until it is ready."""
    opts = LabOptions(
        name=name,
        version=version or default_version(),
        nodes=nodes,
        cpu_nodes=cpu_nodes,
        gpus_per_node=gpus_per_node,
        accelerators=accelerators,
        without=_names(without),
        with_=_names(with_),
        state_dir=state_dir,
    )
    lab = Lab(opts)
    took = lab.up(build=build, progress=_say)
    _say(f"lab {name!r} ({opts.version}) ready in {took:.1f}s at {lab.server}")
    _say(f"export KUBECONFIG={lab.kubeconfig}")


@lab_group.command("down")
@_name_option
@_state_option
def down_cmd(name: str, state_dir: Path | None) -> None:
    """Stop every process of a lab and remove its state directory."""
    if not Lab.exists(name, state_dir):
        _say(f"no lab named {name!r}; nothing to do")
        return
    t = time.monotonic()
    _load(name, state_dir).down()
    _say(f"lab {name!r} is down ({time.monotonic() - t:.1f}s)")


@lab_group.command("status")
@_name_option
@_state_option
@click.option("-o", "--output", "fmt", type=OUTPUT_CHOICE, default="text", show_default=True)
def status_cmd(name: str, state_dir: Path | None, fmt: str) -> None:
    """Show the components of a lab; exit 1 if any is not healthy."""
    lab = _load(name, state_dir)
    summary = lab.summary()
    if fmt == "text":
        click.echo(
            f"lab {name!r} {summary['version']} at {summary['server']}  "
            f"kubeconfig: {summary['kubeconfig']}"
        )
        rows = [
            [
                c["name"],
                "ok" if c["healthy"] else "NOT READY",
                ",".join(str(p) for p in c["pids"]) or "-",
                f"{c['rss_bytes'] / 2**20:.0f} MiB" if c["pids"] else "-",
            ]
            for c in summary["components"]
        ]
        emit_table(["COMPONENT", "STATE", "PID", "RSS"], rows)
    else:
        emit_structured(summary, fmt)
    if not summary["ready"]:
        sys.exit(int(ExitCode.NOT_MET))


@lab_group.command("kubeconfig")
@_name_option
@_state_option
def kubeconfig_cmd(name: str, state_dir: Path | None) -> None:
    """Print the path of the lab's admin kubeconfig."""
    click.echo(str(_load(name, state_dir).kubeconfig))


@lab_group.command("logs")
@click.argument("component")
@_name_option
@_state_option
@click.option("-n", "--lines", type=int, default=0, help="Only the last N lines.")
@click.option("--path", "path_only", is_flag=True, help="Print the log file's path only.")
def logs_cmd(
    component: str, name: str, state_dir: Path | None, lines: int, path_only: bool
) -> None:
    """Print the log of a lab component (e.g. kube-apiserver, kwok)."""
    path = _load(name, state_dir).log_path(component)
    if path_only:
        click.echo(str(path))
        return
    if not path.is_file():
        _say(f"{component} has not written a log yet ({path})")
        return
    text = path.read_text(errors="replace")
    if lines > 0:
        text = "\n".join(text.splitlines()[-lines:]) + "\n"
    click.echo(text, nl=False)


@lab_group.command(
    "kubectl", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@_name_option
@_state_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl_cmd(name: str, state_dir: Path | None, args: tuple[str, ...]) -> None:
    """Run the lab's own kubectl (same version as the lab) against the lab."""
    lab = _load(name, state_dir)
    exe = lab.ctx.binary("kubectl")
    if not exe.is_file():
        raise LabError(f"kubectl is missing in {exe.parent}; run `make lab-binaries`")
    sys.stdout.flush()
    os.execve(str(exe), [str(exe), f"--kubeconfig={lab.kubeconfig}", *args], clean_env())


@lab_group.command("build")
@click.option(
    "--version",
    "version",
    default=None,
    help="Kubernetes version to build for [default: $KAIC_KUBE_VERSION or the "
    "default of programs.toml].",
)
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="PROGRAM[,PROGRAM…]",
    help="Build only these programs (see --list).",
)
@click.option(
    "--pin",
    is_flag=True,
    help="Also write the resolved module graphs into lab/versions/ (source tree).",
)
@click.option(
    "--list",
    "list_only",
    is_flag=True,
    help="List the programs of programs.toml and whether each is built.",
)
@click.option(
    "-o",
    "--output",
    "fmt",
    type=OUTPUT_CHOICE,
    default="text",
    show_default=True,
    help="Output of --list.",
)
def build_cmd(
    version: str | None, only: tuple[str, ...], pin: bool, list_only: bool, fmt: str
) -> None:
    """Build the lab's upstream programs from the Go module proxy (only what is missing)."""
    from kaic.lab.build import Builder

    builder = Builder(version or default_version(), say=_say)
    if list_only:
        rows = builder.inventory()
        if fmt == "text":
            emit_table(
                ["PROGRAM", "MODULE", "VERSION", "GROUP", "BINARIES", "STATE"],
                [
                    [
                        r["name"],
                        r["module"],
                        r["version"],
                        r["group"],
                        ",".join(r["binaries"]) or "-",
                        r["state"],
                    ]
                    for r in rows
                ],
            )
        else:
            emit_structured({"kubernetes": builder.kube, "programs": rows}, fmt)
        return
    t = time.monotonic()
    result = builder.build(sorted(_names(only)) or None, pin=pin)
    if not result.built:
        return
    for prog, seconds in result.built.items():
        _say(f"  {prog}: {seconds:.0f} s")
    _say(f"lab programs for {builder.kube} ready in {builder.bin} ({time.monotonic() - t:.0f} s)")


@lab_group.command("components")
@click.option("-o", "--output", "fmt", type=OUTPUT_CHOICE, default="text", show_default=True)
def components_cmd(fmt: str) -> None:
    """List the lab's components and which ones --without/--with accept."""
    rows: list[dict[str, Any]] = [
        {
            "name": c.name,
            "order": c.order,
            "kind": "core" if not c.optional else ("default" if c.default else "opt-in"),
            "description": c.description,
        }
        for c in all_components()
    ]
    if fmt == "text":
        emit_table(
            ["NAME", "KIND", "DESCRIPTION"],
            [[r["name"], r["kind"], r["description"]] for r in rows],
        )
    else:
        emit_structured({"components": rows}, fmt)
