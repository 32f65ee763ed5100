"""Editing the answers of a PRODUCT.yaml in its own text, so only the answered lines change.

Owns: locating each requirement's ``status``, ``notes`` and ``evidence`` in the source
text (character offsets from the YAML composer), and splicing new values into it: a
scalar is replaced where it stands, evidence is appended as new list lines in the
file's own indentation and line endings. Everything else (comments, quoting, flow or
block style, CRLF, a byte order mark, numbers such as ``1e309``, ``null``) stays byte
for byte. Must not decide what the answers are (that is ``fill``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml as pyyaml

from kaic.errors import InputError

__all__ = ["Entry", "TextDoc", "quote"]

BOM = "\ufeff"
_UNSAFE = re.compile("[\u0085\u2028\u2029\ufeff]")


def quote(text: str) -> str:
    """``text`` as a YAML double-quoted scalar on one line."""
    out = json.dumps(text, ensure_ascii=False)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", out)


@dataclass
class Entry:
    """One requirement mapping of ``spec`` and the nodes of its answer fields."""

    rid: str
    node: Any
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def text(self, key: str) -> str:
        """The value of a scalar field as a string field would read it ("" for null)."""
        pair = self.fields.get(key)
        if pair is None or not isinstance(pair[1], pyyaml.ScalarNode):
            return ""
        v = pair[1]
        if v.style is None and v.tag == "tag:yaml.org,2002:null":
            return ""
        return str(v.value)

    def evidence(self) -> list[str]:
        pair = self.fields.get("evidence")
        if pair is None:
            return []
        v = pair[1]
        if isinstance(v, pyyaml.SequenceNode):
            return [str(i.value) for i in v.value if isinstance(i, pyyaml.ScalarNode)]
        if isinstance(v, pyyaml.ScalarNode) and self.text("evidence"):
            return [str(v.value)]
        return []


class TextDoc:
    """A checklist's text and its requirement entries; edits are collected, then applied
    at once by ``render``."""

    def __init__(self, raw: str) -> None:
        self.bom = raw.startswith(BOM)
        self.text = raw[1:] if self.bom else raw
        self.nl = "\r\n" if "\r\n" in self.text else "\n"
        self.edits: list[tuple[int, int, str]] = []
        try:
            # NOTE: the pure-Python composer: its marks are character offsets.
            root = pyyaml.compose(self.text, Loader=pyyaml.SafeLoader)
        except pyyaml.YAMLError as e:
            raise InputError(f"cannot read the checklist: {' '.join(str(e).split())}") from e
        self.entries: dict[str, Entry] = {}
        spec = _get(root, "spec")
        if not isinstance(spec, pyyaml.MappingNode):
            raise InputError("the checklist has no 'spec' mapping; run kaic checklist validate")
        for _, items in spec.value:
            if not isinstance(items, pyyaml.SequenceNode):
                continue
            for item in items.value:
                if not isinstance(item, pyyaml.MappingNode):
                    continue
                rid = _get(item, "id")
                if not isinstance(rid, pyyaml.ScalarNode) or rid.value in self.entries:
                    continue
                entry = Entry(str(rid.value), item)
                for k, v in item.value:
                    if isinstance(k, pyyaml.ScalarNode):
                        entry.fields[str(k.value)] = (k, v)
                self.entries[entry.rid] = entry

    # -- edits --------------------------------------------------------------------------
    def set_scalar(self, entry: Entry, key: str, value: str) -> None:
        """Make ``entry[key]`` the double-quoted ``value``."""
        new = quote(value)
        pair = entry.fields.get(key)
        if pair is None:
            self._add_key(entry, f"{key}: {new}")
            return
        k, v = pair
        if isinstance(v, pyyaml.ScalarNode) and v.start_mark.index == v.end_mark.index:
            # an empty value (``notes:``): write right after the colon
            colon = self.text.index(":", k.end_mark.index)
            self.edits.append((colon + 1, colon + 1, " " + new))
            return
        self._replace_node(v, new)

    def append_evidence(self, entry: Entry, refs: list[str], indent_offset: int) -> None:
        if not refs:
            return
        pair = entry.fields.get("evidence")
        if pair is None:
            self._add_key(entry, "evidence: [" + ", ".join(quote(r) for r in refs) + "]")
            return
        k, v = pair
        if (
            isinstance(v, pyyaml.SequenceNode)
            and v.flow_style
            and not v.value
            and not entry.node.flow_style
        ):
            # ``evidence: []`` becomes a block list under the key; a trailing comment stays
            start, end = v.start_mark.index, v.end_mark.index
            eol = self._eol(end)
            rest = self.text[end:eol]
            lead = " " * (k.start_mark.column + indent_offset)
            lines = "".join(f"{self.nl}{lead}- {quote(r)}" for r in refs)
            if rest.strip():
                self.edits.append((start, end, " " * (end - start)))
            else:
                self.edits.append((len(self.text[:start].rstrip(" ")), eol, ""))
            self.edits.append((eol, eol, lines))
            return
        if isinstance(v, pyyaml.SequenceNode) and v.flow_style:
            items = [self.text[i.start_mark.index : i.end_mark.index] for i in v.value]
            self._replace_node(v, "[" + ", ".join([*items, *(quote(r) for r in refs)]) + "]")
            return
        if isinstance(v, pyyaml.SequenceNode) and v.value:
            last = v.value[-1]
            first = v.value[0]
            line_start = self.text.rfind("\n", 0, first.start_mark.index) + 1
            dash = self.text.rfind("-", line_start, first.start_mark.index)
            col = (dash - line_start) if dash >= 0 else first.start_mark.column
            at = self._after(last)
            lines = "".join(f"{' ' * col}- {quote(r)}{self.nl}" for r in refs)
            if at is None:
                eol = self._eol(last.end_mark.index)
                self.edits.append((eol, eol, self.nl + lines.removesuffix(self.nl)))
            else:
                self.edits.append((at, at, lines))
            return
        if isinstance(v, pyyaml.ScalarNode):
            old = (
                []
                if not entry.text("evidence")
                else [self.text[v.start_mark.index : v.end_mark.index]]
            )
            self._replace_node(v, "[" + ", ".join([*old, *(quote(r) for r in refs)]) + "]")
            return
        raise InputError(
            f"'{entry.rid}': evidence is neither a list nor a string; fix it by "
            "hand first (kaic checklist validate shows where)"
        )

    def drop_evidence(self, entry: Entry, drop: set[str]) -> None:
        """Remove block-list evidence lines whose value is in ``drop`` (``--force``)."""
        pair = entry.fields.get("evidence")
        if pair is None or not isinstance(pair[1], pyyaml.SequenceNode) or pair[1].flow_style:
            return
        for item in pair[1].value:
            if not isinstance(item, pyyaml.ScalarNode) or item.value not in drop:
                continue
            s, e = item.start_mark.index, item.end_mark.index
            line_start = self.text.rfind("\n", 0, s) + 1
            eol = self._eol(e)
            if self.text[line_start:s].strip() != "-" or self.text[e:eol].strip():
                continue  # not alone on its line: leave it
            end = eol + (
                2
                if self.text.startswith("\r\n", eol)
                else 1
                if self.text.startswith("\n", eol)
                else 0
            )
            self.edits.append((line_start, end, ""))

    # -- helpers ------------------------------------------------------------------------
    def _eol(self, index: int) -> int:
        n = self.text.find("\n", index)
        if n < 0:
            return len(self.text)
        return n - 1 if n > 0 and self.text[n - 1] == "\r" else n

    def _after(self, node: Any) -> int | None:
        """The start of the line after a block node that ends a line, else None."""
        end = node.end_mark.index
        if isinstance(node, pyyaml.ScalarNode) and node.style not in ("|", ">"):
            return None
        return end if end > 0 and self.text[end - 1] == "\n" else None

    def _replace_node(self, node: Any, new: str) -> None:
        s, e = node.start_mark.index, node.end_mark.index
        old = self.text[s:e]
        tail = old[len(old.rstrip()) :]  # a block scalar's line breaks stay
        self.edits.append((s, e, new + tail))

    def _add_key(self, entry: Entry, line: str) -> None:
        m = entry.node
        if m.flow_style:
            close = m.end_mark.index - 1
            self.edits.append((close, close, ", " + line))
            return
        keys = [k for k, _ in m.value]
        col = keys[0].start_mark.column if keys else m.start_mark.column
        last = m.value[-1][1]
        at = self._after(last)
        if at is None:
            eol = self._eol(last.end_mark.index)
            self.edits.append((eol, eol, f"{self.nl}{' ' * col}{line}"))
        else:
            self.edits.append((at, at, f"{' ' * col}{line}{self.nl}"))

    def render(self) -> str:
        """The text with every edit applied (they never overlap), BOM included."""
        out = self.text
        for s, e, new in sorted(self.edits, key=lambda x: (x[0], x[1]), reverse=True):
            out = out[:s] + new + out[e:]
        return (BOM if self.bom else "") + out


def _get(mapping: Any, key: str) -> Any:
    if not isinstance(mapping, pyyaml.MappingNode):
        return None
    for k, v in mapping.value:
        if isinstance(k, pyyaml.ScalarNode) and k.value == key:
            return v
    return None
