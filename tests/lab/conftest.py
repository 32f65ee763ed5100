"""Fixtures for tests that need the lab cluster (marker ``lab``).

* ``lab`` (session): one full lab (all default components, 2 GPU nodes with 8 simulated
  GPUs each in both device-plugin and DRA mode, 1 CPU node), up for the whole session.
* ``lab_factory`` (session): ``lab_factory(without={"gateway-api"}, accelerators="none")``
  returns a second, differently configured lab (cached per option set), for cases where
  a requirement must not hold. At most ``KAIC_TEST_MAX_LABS`` (default 3) of them run at
  once: asking for another takes down the one asked for least recently (it is started
  again when asked for again). Every lab started here is taken down at session end.
* ``KAIC_TEST_LAB=NAME`` reuses an already running lab (``kaic lab up --name NAME``) for
  ``lab`` instead of starting one, and leaves it running (fast iterations).

Labs are named ``pytest-<pid>[-n]`` so that sessions running side by side do not meet;
labs left behind by a crashed session (its pid gone) are taken down first.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from labtools import LabFactory, wait_for

from kaic.lab import Lab, LabOptions, list_labs
from kaic.lab import binaries as lab_binaries
from kaic.lab.options import default_version

MAX_LABS = int(os.environ.get("KAIC_TEST_MAX_LABS", "3"))
"""Labs of ``lab_factory`` running at once (besides the session's ``lab``)."""


def _reap_stale_labs() -> None:
    for d in list_labs():
        parts = d.name.split("-")
        if parts[0] != "pytest" or len(parts) < 2 or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
            continue
        with contextlib.suppress(Exception):  # a broken leftover must not stop the session
            Lab.load(d.name).down()


def _binaries_or_skip(version: str) -> None:
    lacking = lab_binaries.missing(version)
    if not lacking:
        return
    if not lab_binaries.can_build():
        pytest.skip(
            f"lab binaries for {version} are missing ({', '.join(lacking)}) and "
            "cannot be built here (needs Go and the source tree)"
        )
    lab_binaries.ensure(version, build=True)


@pytest.fixture(scope="session")
def lab_factory() -> Iterator[LabFactory]:
    version = default_version()
    started: dict[str, Lab] = {}
    counter = iter(range(1, 1000))

    def make(**options: Any) -> Lab:
        _binaries_or_skip(options.get("version", version))
        key = repr(
            sorted(
                (k, sorted(v) if isinstance(v, set | frozenset) else v) for k, v in options.items()
            )
        )
        if key in started:
            started[key] = started.pop(key)  # most recently asked for last
            return started[key]
        while len(started) >= MAX_LABS:
            oldest = next(iter(started))
            with contextlib.suppress(Exception):
                started.pop(oldest).down()
        for k in ("without", "with_"):
            if k in options:
                options[k] = frozenset(options[k])
        opts = LabOptions(name=f"pytest-{os.getpid()}-{next(counter)}", **options)
        lab = Lab(opts)
        started[key] = lab
        try:
            lab.up()
        except Exception:
            # NOTE: a lab that failed to start is not handed to the next test asking
            # for the same shape; that one starts it anew.
            started.pop(key, None)
            with contextlib.suppress(Exception):
                lab.down()
            raise
        return lab

    _reap_stale_labs()
    try:
        yield make
    finally:
        for lab in started.values():
            with contextlib.suppress(Exception):
                lab.down()
        # NOTE: a fixture may have started a lab again after it was taken down.
        for d in list_labs():
            if d.name.startswith(f"pytest-{os.getpid()}-"):
                with contextlib.suppress(Exception):
                    Lab.load(d.name).down()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    reuse = os.environ.get("KAIC_TEST_LAB")
    if reuse:
        existing = Lab.load(reuse)
        existing.up()
        yield existing
        return
    version = default_version()
    _binaries_or_skip(version)
    _reap_stale_labs()
    the_lab = Lab(LabOptions(name=f"pytest-{os.getpid()}", version=version))
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def namespace(lab: Lab, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace in the session lab, deleted afterwards."""
    base = "t-" + request.node.name.lower().replace("_", "-")[:44].strip("-")
    base = "".join(c for c in base if c.isalnum() or c == "-")
    name = f"{base}-{secrets.token_hex(3)}"
    lab.ctx.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    wait_for(
        lambda: lab.ctx.exists(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        what=f"the default ServiceAccount in {name}",
    )
    yield name
    lab.ctx.request("DELETE", f"/api/v1/namespaces/{name}")
