"""Every environment variable the code reads is in the README's configuration table."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ = re.compile(r"""(?:environ\.get|_number)\(\s*["']([A-Z][A-Z0-9_]+)["']""")


def variables_read() -> set[str]:
    found: set[str] = set()
    for folder in ("graph", "nodes"):
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(READ.findall(path.read_text(encoding="utf-8")))
    return found


def configuration_table() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]


def test_every_variable_read_is_documented() -> None:
    names = variables_read()
    assert {"REDIS_URL", "CHECKPOINT_DURABILITY", "GC_YOUNG_THRESHOLD"} <= names  # the scan works
    table = configuration_table()
    missing = sorted(n for n in names if f"`{n}`" not in table)
    assert not missing, f"read by the code but not in README's configuration table: {missing}"
