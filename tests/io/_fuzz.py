"""Hypothesis strategies shared by the fuzz tests: valid files, then damage to them.

Byte damage (truncate, flip, insert, delete, overwrite, duplicate spans), JSON
damage (a value replaced by one of the wrong type, a key deleted, a list entry
duplicated or dropped) and text-line damage all start from a valid file, so most
examples reach deep into a reader instead of failing at its first check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import event as _event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from deepblock_nb.errors import DeepBlockError

# DBN_FUZZ_EXAMPLES=5000 for a deeper run by hand; the suite keeps to a few seconds
FUZZ = settings(
    max_examples=int(os.environ.get("DBN_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- values of the wrong type, and numbers at every edge ------------------------------
edge_numbers = st.one_of(
    st.sampled_from([0, -1, 1, 0.5, -0.5, 1e-320, 1e308, -1e308, 2**53 + 1, 2**63, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
)
wrong_values = st.one_of(
    st.none(),
    st.booleans(),
    edge_numbers,
    st.text(max_size=6),
    st.sampled_from(["1", "nan", "", " ", "a.png", "../x.png", "car", "\x00", "1e400"]),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=5),
    st.builds(lambda: [[[]]]),  # a fresh list each time: mutations below change it in place
    st.dictionaries(st.sampled_from(["id", "name", "x"]), st.integers(0, 3), max_size=2),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (tuple of keys/indices) into a JSON value, the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


@st.composite
def mutated_json(draw: st.DrawFn, doc: Any, max_ops: int = 3) -> Any:
    """``doc`` (not modified) after 0..``max_ops`` structural mutations."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(0, max_ops))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "duplicate", "bump", "wrap"]))
        if not path:  # the root itself
            if op in ("replace", "delete"):
                doc = draw(wrong_values)
            elif op == "wrap":
                doc = [doc]
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        if op == "replace":
            parent[key] = draw(wrong_values)
        elif op == "delete":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, json.loads(json.dumps(parent[key])))
        elif op == "bump" and isinstance(parent[key], int | float) and not isinstance(parent[key], bool):
            delta = draw(st.sampled_from([-1, 1, 1000, -1000, 0.5, 1e9]))
            try:
                parent[key] = parent[key] + delta
            except OverflowError:  # 10**400 + 0.5
                parent[key] = delta
        elif op == "wrap":
            parent[key] = [parent[key]]
    return doc


def dump_json(draw: st.DrawFn, doc: Any) -> bytes:
    """JSON text of ``doc`` the way some tool might write it (indent, BOM, NaN allowed)."""
    text = json.dumps(doc, indent=draw(st.sampled_from([None, 1])), ensure_ascii=draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes no UTF-8 reader accepts
    if draw(st.integers(0, 9)) == 0:
        data = b"\xef\xbb\xbf" + data
    return data


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes, max_ops: int = 3) -> bytes:
    """``data`` after 1..``max_ops`` byte-level mutations."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "overwrite", "duplicate"]))
        n = len(buf)
        # half the damage lands in the first bytes, where headers and tables are
        at = draw(st.one_of(st.integers(min(n, 4), min(n, 160)), st.integers(0, max(0, n))))
        if op == "truncate":  # to nothing only rarely: empty files have tests of their own
            del buf[max(at, 1) :]
        elif op == "flip" and n:
            i = min(at, n - 1)
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and n:
            del buf[at : at + draw(st.integers(1, 16))]
        elif op == "overwrite" and n:
            chunk = draw(st.binary(min_size=1, max_size=8))
            buf[at : at + len(chunk)] = chunk
        elif op == "duplicate" and n:
            end = min(n, at + draw(st.integers(1, 64)))
            buf[end:end] = buf[at:end]
    return bytes(buf)


@st.composite
def mutated_lines(draw: st.DrawFn, text: str, junk: st.SearchStrategy[str]) -> str:
    """``text`` with lines replaced, inserted, deleted or split differently."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "columns"]))
        at = draw(st.integers(0, len(lines)))
        if op == "replace" and lines:
            lines[min(at, len(lines) - 1)] = draw(junk)
        elif op == "insert":
            lines.insert(at, draw(junk))
        elif op == "delete" and lines:
            del lines[min(at, len(lines) - 1)]
        elif op == "columns" and lines:
            i = min(at, len(lines) - 1)
            parts = lines[i].split()
            extra = draw(st.lists(st.sampled_from(["0", "1", "x", "-1", "nan", "1e400", "0.5"]), max_size=3))
            lines[i] = " ".join(parts[: draw(st.integers(0, len(parts)))] + extra)
    end = draw(st.sampled_from(["\n", "\r\n", ""]))
    return end.join(lines) + (end if lines else "")


def check_outcome(run: Callable[[], Any], names: list[str]) -> tuple[Any, DeepBlockError | None]:
    """Run ``run``; a ``DeepBlockError`` must name one of ``names`` (files involved).

    Any other exception propagates and fails the test.
    """
    try:
        out = run()
    except DeepBlockError as exc:
        message = str(exc)
        assert any(n in message for n in names), f"{type(exc).__name__} names none of {names}: {message}"
        # --hypothesis-show-statistics then tells how deep the examples reach
        event(f"{type(exc).__name__}: {gist(message, names)}")
        return None, exc
    event("clean")
    return out, None


def event(label: str) -> None:
    """``hypothesis.event`` inside a hypothesis test; nothing in a plain one."""
    if currently_in_test_context():
        _event(label)


def gist(message: str, names: list[str]) -> str:
    """The problem a message states, without file names or values: a stable event label."""
    for n in sorted(names, key=len, reverse=True):
        if len(n) > 2:  # short stems ("a") would cut words apart
            message = message.replace(n, "")
    words = [w for w in message.replace(":", " ").split() if w.isalpha()]
    return " ".join(words[:5])


class Scratch:
    """Fresh, distinct file names under one folder (hypothesis reuses no tmp_path)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.n = 0

    def path(self, name: str) -> Path:
        self.n += 1
        folder = self.root / f"ex{self.n}"
        folder.mkdir(parents=True)
        return folder / name
