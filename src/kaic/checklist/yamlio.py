"""Safe reading and round-trip writing of checklist YAML.

Owns: the input limits (size, depth, aliases, nodes), turning any unreadable input into
findings with a position, locating keys and items (1-based line/column), and writing a
document back with ruamel.yaml so comments, key order and quoting survive. Must not
decide whether a checklist is valid.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import math
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml as pyyaml

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

from kaic.checklist.findings import Finding, Severity
from kaic.errors import UsageError

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_ALIASES = 100
MAX_NODES = 100_000

Pos = tuple[int, int]

# NOTE: validation reads with libyaml (PyYAML's C parser) into dicts and lists that carry
# positions, which is two orders of magnitude faster than ruamel.yaml's round-trip loader;
# editing (fill, upgrade, init) reads with ruamel.yaml so comments and quoting survive.
_Loader: Any = getattr(pyyaml, "CSafeLoader", pyyaml.SafeLoader)


class PMap(dict[Any, Any]):
    """A mapping read for validation, with the positions of its keys and values."""

    pos: Pos = (1, 1)

    def __init__(self) -> None:
        super().__init__()
        self.kpos: dict[Any, Pos] = {}
        self.vpos: dict[Any, Pos] = {}
        self.raw: dict[Any, str] = {}
        """The source text of each scalar value (what yaml.v3 puts in a string field)."""


class PList(list[Any]):
    """A sequence read for validation, with the positions of its items."""

    pos: Pos = (1, 1)

    def __init__(self) -> None:
        super().__init__()
        self.ipos: list[Pos] = []
        self.iraw: list[str | None] = []
        """The source text of each scalar item; None for a mapping or list."""


@dataclass
class Loaded:
    """A parsed document (or None) and the findings reading it produced."""

    path: str
    doc: Any = None
    text: str = ""
    findings: list[Finding] = field(default_factory=list)
    unreadable: bool = False
    """True when the input could not be read as YAML at all (exit code 2)."""


def _yaml() -> YAML:
    # NOTE: imported here: validation never needs ruamel.yaml, only editing does.
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1_000_000
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _finding(path: str, rule: str, message: str, pos: Pos = (1, 1), hint: str = "") -> Finding:
    return Finding(rule, Severity.ERROR, message, path, pos[0], pos[1], hint)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _mark(mark: Any) -> Pos:
    if mark is None:
        return (1, 1)
    return (int(getattr(mark, "line", 0)) + 1, int(getattr(mark, "column", 0)) + 1)


def load_bytes(data: bytes, path: str, roundtrip: bool = True) -> Loaded:
    """Parse ``data`` within the limits; never raises for bad input.

    ``roundtrip`` gives ruamel.yaml objects (for editing); otherwise ``PMap``/``PList``.
    """
    out = Loaded(path=path)
    if len(data) > MAX_BYTES:
        out.findings.append(
            _finding(
                path,
                "input.too-large",
                f"file is {len(data)} bytes or more; the limit is {MAX_BYTES} bytes (1 MiB)",
                hint="a PRODUCT.yaml is a few KiB; check that this is the right file",
            )
        )
        out.unreadable = True
        return out
    if b"\x00" in data:
        nul = data.index(b"\x00")
        line = data.count(b"\n", 0, nul) + 1
        out.findings.append(
            _finding(
                path,
                "input.binary",
                "file contains NUL bytes; it is not a YAML text file",
                (line, 1),
                hint="give the path of PRODUCT.yaml",
            )
        )
        out.unreadable = True
        return out
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        out.findings.append(
            _finding(
                path,
                "input.binary",
                f"file is not UTF-8 text (bad byte at offset {e.start})",
                (line, 1),
                hint="save the file as UTF-8",
            )
        )
        out.unreadable = True
        return out
    out.text = text
    if not _scan(out):
        out.unreadable = True
        return out
    if roundtrip:
        return _load_roundtrip(out)
    return _load_positioned(out)


def _syntax_finding(path: str, text: str, e: BaseException) -> Finding:
    problem = getattr(e, "problem", None)
    context = getattr(e, "context", None)
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if problem or context:
        msg = f"YAML syntax error: {_one_line(problem or context)}"
        if problem and context:
            msg += f" ({_one_line(context)})"
        pos = _mark(mark)
    else:
        msg = f"YAML syntax error: {_one_line(e) or type(e).__name__}"
        position = getattr(e, "position", None)
        pos = _mark(mark)
        if isinstance(position, int):
            pos = (text.count("\n", 0, position) + 1, 1)
    hint = (
        "each key may appear once per mapping; remove or merge the duplicate"
        if "duplicate key" in msg
        else "fix the YAML syntax at this position (check indentation and quotes)"
    )
    return _finding(path, "input.yaml-syntax", msg, pos, hint)


def _scan(out: Loaded) -> bool:
    """Walk the event stream (libyaml, no recursion) to enforce the limits."""
    depth = aliases = nodes = docs = 0
    try:
        for ev in pyyaml.parse(out.text, Loader=_Loader):
            if isinstance(ev, pyyaml.MappingStartEvent | pyyaml.SequenceStartEvent):
                depth += 1
                nodes += 1
                if depth > MAX_DEPTH:
                    out.findings.append(
                        _finding(
                            out.path,
                            "input.too-deep",
                            f"nesting deeper than {MAX_DEPTH} levels",
                            _mark(ev.start_mark),
                            hint="a checklist nests four levels deep; this is not a checklist",
                        )
                    )
                    return False
            elif isinstance(ev, pyyaml.MappingEndEvent | pyyaml.SequenceEndEvent):
                depth -= 1
            elif isinstance(ev, pyyaml.ScalarEvent):
                nodes += 1
            elif isinstance(ev, pyyaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    out.findings.append(
                        _finding(
                            out.path,
                            "input.too-many-aliases",
                            f"more than {MAX_ALIASES} YAML aliases",
                            _mark(ev.start_mark),
                            hint="write values out instead of using anchors and aliases",
                        )
                    )
                    return False
            elif isinstance(ev, pyyaml.DocumentStartEvent):
                docs += 1
                if docs > 1:
                    out.findings.append(
                        _finding(
                            out.path,
                            "input.yaml-syntax",
                            "more than one YAML document in the file",
                            _mark(ev.start_mark),
                            hint="a PRODUCT.yaml holds exactly one document; remove '---'",
                        )
                    )
                    return False
            if nodes > MAX_NODES:
                out.findings.append(
                    _finding(
                        out.path,
                        "input.too-many-nodes",
                        f"more than {MAX_NODES} YAML nodes",
                        _mark(ev.start_mark),
                        hint="a PRODUCT.yaml has a few hundred nodes",
                    )
                )
                return False
    except pyyaml.YAMLError as e:
        if "maximum nesting depth" in str(e):  # libyaml's own limit, hit while scanning ahead
            out.findings.append(
                _finding(
                    out.path,
                    "input.too-deep",
                    f"nesting deeper than {MAX_DEPTH} levels",
                    _mark(getattr(e, "problem_mark", None)),
                    hint="a checklist nests four levels deep; this is not a checklist",
                )
            )
        else:
            out.findings.append(_syntax_finding(out.path, out.text, e))
        return False
    return True


def _load_roundtrip(out: Loaded) -> Loaded:
    from ruamel.yaml.error import YAMLError as RuamelYAMLError

    try:
        out.doc = _yaml().load(out.text)
    except RuamelYAMLError as e:
        out.findings.append(_syntax_finding(out.path, out.text, e))
        out.unreadable = True
    except (RecursionError, ValueError, TypeError, OverflowError) as e:
        out.findings.append(
            _finding(
                out.path,
                "input.yaml-syntax",
                f"cannot read YAML: {_one_line(e) or type(e).__name__}",
            )
        )
        out.unreadable = True
    return out


_STR = "tag:yaml.org,2002:str"

# yaml.v3's resolution of plain scalars (resolve.go), which is how the official validator
# types metadata values: YAML 1.2 core schema, plus 1.1 octals (017) and timestamps.
_V3_MAP: dict[str, Any] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_V3_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_INT = re.compile(r"^[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")
_V3_TS = re.compile(
    r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})"
    r"(?:(?:[Tt]([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.([0-9]{1,9}))?"
    r"(?:Z|[-+][0-9]{2}:[0-9]{2}))|(?: ([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})"
    r"(?:\.([0-9]{1,9}))?))?$"
)


def _go_int(text: str) -> int | None:
    if not _GO_INT.match(text):
        return None
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    low = body[:2].lower()
    base = {"0x": 16, "0o": 8, "0b": 2}.get(low)
    if base is not None:
        value = int(body[2:], base)
    elif len(body) > 1 and body.startswith("0"):
        value = int(body[1:], 8)
    else:
        value = int(body)
    value *= sign
    if not -(1 << 63) <= value < (1 << 64):
        return None  # strconv.ParseInt/ParseUint range
    return value


def _timestamp(text: str) -> dt.date | None:
    m = _V3_TS.match(text)
    if not m:
        return None
    try:
        day = dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        hms = [g for g in (m.group(4), m.group(5), m.group(6)) if g] or [
            g for g in (m.group(8), m.group(9), m.group(10)) if g
        ]
        if len(hms) == 3:
            return dt.datetime(day.year, day.month, day.day, int(hms[0]), int(hms[1]), int(hms[2]))
    except ValueError:
        return None
    return day


def v3_resolve(value: str) -> Any:
    """The Go value yaml.v3 decodes an untagged plain scalar to, as a Python value:
    None, bool, int, float, a date/datetime for timestamps, or the text itself."""
    if value in _V3_MAP:
        return _V3_MAP[value]
    if not value:
        return value
    first = value[0]
    if first == ".":
        with contextlib.suppress(ValueError):
            f = float(value)
            if math.isfinite(f):
                return f
        return value
    if not (first.isascii() and (first.isdigit() or first in "+-")):
        return value
    ts = _timestamp(value)
    if ts is not None:
        return ts
    plain = value.replace("_", "")
    iv = _go_int(plain)
    if iv is not None:
        return iv
    if _V3_FLOAT.match(plain):
        f = float(plain)
        return f if math.isfinite(f) else value  # ParseFloat fails on overflow
    return value


def _scalar(node: Any) -> Any:
    value: str = node.value
    if node.style in ("'", '"', "|", ">"):
        return value
    if node.tag not in _IMPLICIT_TAGS:
        return value  # an explicit tag such as !!binary: keep the text
    return v3_resolve(value)


_IMPLICIT_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}"
    for t in ("str", "null", "bool", "int", "float", "timestamp", "merge", "value", "yaml")
)


def _load_positioned(out: Loaded) -> Loaded:
    try:
        root = pyyaml.compose(out.text, Loader=_Loader)
    except pyyaml.YAMLError as e:
        out.findings.append(_syntax_finding(out.path, out.text, e))
        out.unreadable = True
        return out
    memo: dict[int, Any] = {}

    def convert(node: Any) -> Any:
        if id(node) in memo:
            return memo[id(node)]
        if isinstance(node, pyyaml.MappingNode):
            m = PMap()
            m.pos = _mark(node.start_mark)
            memo[id(node)] = m
            for knode, vnode in node.value:
                key = convert(knode)
                if isinstance(key, dict | list):
                    key = _one_line(repr(key))
                kpos = _mark(knode.start_mark)
                if key in m.kpos:
                    out.findings.append(
                        _finding(
                            out.path,
                            "input.yaml-syntax",
                            f"YAML syntax error: duplicate key {key!r} (first at line "
                            f"{m.kpos[key][0]})",
                            kpos,
                            "each key may appear once per mapping; remove or merge the duplicate",
                        )
                    )
                m[key] = convert(vnode)
                if isinstance(vnode, pyyaml.ScalarNode):
                    m.raw[key] = vnode.value
                m.kpos[key] = kpos
                m.vpos[key] = _mark(vnode.start_mark)
            return m
        if isinstance(node, pyyaml.SequenceNode):
            seq = PList()
            seq.pos = _mark(node.start_mark)
            memo[id(node)] = seq
            for inode in node.value:
                seq.append(convert(inode))
                seq.ipos.append(_mark(inode.start_mark))
                seq.iraw.append(inode.value if isinstance(inode, pyyaml.ScalarNode) else None)
            return seq
        value = _scalar(node)
        memo[id(node)] = value
        return value

    out.doc = None if root is None else convert(root)
    return out


def load_text(text: str, path: str, roundtrip: bool = True) -> Loaded:
    """Parse ``text`` (already decoded) within the limits; never raises for bad input."""
    return load_bytes(text.encode("utf-8", errors="surrogatepass"), path, roundtrip)


def load_file(path: Path, roundtrip: bool = True) -> Loaded:
    """Read and parse ``path`` within the limits; never raises for bad input."""
    shown = str(path)
    try:
        if path.is_dir():
            return Loaded(
                path=shown,
                unreadable=True,
                findings=[
                    _finding(
                        shown,
                        "input.unreadable",
                        "is a directory, not a file",
                        hint="give the path of PRODUCT.yaml",
                    )
                ],
            )
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        return Loaded(
            path=shown,
            unreadable=True,
            findings=[
                _finding(
                    shown,
                    "input.unreadable",
                    f"cannot read file: {e.strerror or e}",
                    hint="check the path and its permissions",
                )
            ],
        )
    return load_bytes(data, shown, roundtrip)


# --- positions ---------------------------------------------------------------------------


def _pos(lc: Any, method: str, arg: Any) -> Pos | None:
    try:
        line, col = getattr(lc, method)(arg)
        return (int(line) + 1, int(col) + 1)
    except (KeyError, AttributeError, TypeError, IndexError, ValueError):
        return None


def node_pos(node: Any, default: Pos = (1, 1)) -> Pos:
    if isinstance(node, PMap | PList):
        return node.pos
    lc = getattr(node, "lc", None)
    if lc is None or getattr(lc, "line", None) is None:
        return default
    return (int(lc.line) + 1, int(lc.col) + 1)


def key_pos(mapping: Any, key: Any, default: Pos = (1, 1)) -> Pos:
    if isinstance(mapping, PMap):
        return mapping.kpos.get(key, mapping.pos)
    if hasattr(mapping, "lc"):  # a ruamel.yaml CommentedMap
        p = _pos(mapping.lc, "key", key)
        if p:
            return p
    return node_pos(mapping, default)


def value_pos(mapping: Any, key: Any, default: Pos = (1, 1)) -> Pos:
    if isinstance(mapping, PMap):
        return mapping.vpos.get(key) or mapping.kpos.get(key) or mapping.pos
    if hasattr(mapping, "lc"):
        p = _pos(mapping.lc, "value", key)
        if p:
            return p
    return key_pos(mapping, key, default)


def item_pos(seq: Any, index: int, default: Pos = (1, 1)) -> Pos:
    if isinstance(seq, PList):
        return seq.ipos[index] if 0 <= index < len(seq.ipos) else seq.pos
    if hasattr(seq, "lc"):  # a ruamel.yaml CommentedSeq
        p = _pos(seq.lc, "item", index)
        if p:
            return p
    return node_pos(seq, default)


# --- writing -----------------------------------------------------------------------------


def set_key(mapping: CommentedMap, key: str, value: Any) -> None:
    """Set ``mapping[key]``; a new key goes last and takes over the blank lines that
    followed the old last key, so the layout of the block stays as it was."""
    if key in mapping or not mapping:
        mapping[key] = value
        return
    last = list(mapping)[-1]
    mapping[key] = value
    tokens = mapping.ca.items.get(last)
    if tokens and len(tokens) > 2 and tokens[2] is not None and not str(tokens[2].value).strip():
        mapping.ca.items[key] = [None, None, tokens[2], None]
        tokens[2] = None


def guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) indentation of a block-style document."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.lstrip(" ")
        if stripped.startswith("- ") and i > 0:
            prev = lines[i - 1]
            prev_indent = len(prev) - len(prev.lstrip(" "))
            if prev.rstrip().endswith(":") and not prev.lstrip().startswith("#"):
                offset = (len(line) - len(stripped)) - prev_indent
                sequence = offset + 2
                return (2, max(sequence, 2), max(offset, 0))
    return (2, 4, 2)


def dump(doc: Any, indent: tuple[int, int, int] = (2, 4, 2)) -> str:
    y = _yaml()
    y.indent(mapping=indent[0], sequence=indent[1], offset=indent[2])
    buf = StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` through a temporary file in the same directory.

    An existing file keeps its permission bits (a read-only one is refused, not replaced);
    a new file gets ``0666`` less the umask, as ``open()`` would give it. A symbolic link
    is never replaced: the caller resolves it first.
    """
    if path.is_symlink():
        raise OSError(errno.ELOOP, f"{path} is a symbolic link")
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if not os.access(path, os.W_OK) or not mode & stat.S_IWUSR:
            raise OSError(errno.EACCES, "the file is read-only")
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, line endings as given) to ``path``; see ``write_atomic_bytes``."""
    write_atomic_bytes(path, text.encode("utf-8", errors="surrogatepass"))


def backup(path: Path) -> Path:
    """Copy ``path`` to ``path.bak`` (or ``.bak.1``, ``.bak.2`` … if taken); return it.

    The copy has the original's permission bits; an existing name, a link included, is
    never written through.
    """
    data = path.read_bytes()
    mode = stat.S_IMODE(path.stat().st_mode)
    n = 0
    candidate = path.with_name(path.name + ".bak")
    while True:
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode | stat.S_IRUSR)
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}.bak.{n}")
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(candidate, mode | stat.S_IRUSR)
        return candidate


def replace_file(target: Path, text: str, *, force: bool) -> Path | None:
    """The one overwrite rule of ``init``, ``upgrade --output`` and ``fill``: an existing
    file is replaced only with ``force`` (a command editing its own input counts as
    forced), never through a symbolic link, and always after a backup, which is returned."""
    if target.is_symlink():
        raise UsageError(f"{target} is a symbolic link; kaic does not write through links")
    saved = None
    if target.exists():
        if not force:
            raise UsageError(f"{target} exists; pass --force to replace it (a backup is kept)")
        saved = backup(target)
    write_atomic(target, text)
    return saved
