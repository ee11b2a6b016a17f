"""Where code may live: SQL only in store/, each module small enough to read."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "deepblock_nb"
SQL = re.compile(
    r"\b(SELECT\b[^\n]+\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b"
)


def _strings(path: Path) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return [
        t.string
        for t in tokens
        if t.type == tokenize.STRING or t.type == getattr(tokenize, "FSTRING_MIDDLE", -1)
    ]


def test_no_sql_outside_store() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "store":
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"\bimport sqlite3\b|\.execute(many)?\(|\._db\.(cx|query|one|scalar|write)\b", text):
            offenders.append(f"{rel}: runs SQL or uses a connection")
        offenders += [f"{rel}: SQL text {s[:40]!r}" for s in _strings(path) if SQL.search(s)]
    assert offenders == []


def test_the_store_reads_columns_by_name() -> None:
    for path in sorted((PACKAGE / "store").glob("*.py")):
        if path.name == "database.py":  # the generic layer: ``scalar`` is a query's first column
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\b(r|row)\[\d+\]", text), f"{path.name}: a row read by position"


def test_modules_stay_readable() -> None:
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
        for p in PACKAGE.rglob("*.py")
    }
    assert {k: v for k, v in sizes.items() if v > 700} == {}
