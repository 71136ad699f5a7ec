"""The routing tables in the README are the ones civit uses."""

from __future__ import annotations

import re
from pathlib import Path

from civit.layouts import ROWS, WEBUIS

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_tables_match_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    found: dict[str, list[str]] = {}
    for match in re.finditer(
        r"^#### [^\n]*\(`(?P<layout>\w+)`\)\n(?P<body>.*?)(?=^#### |^¹)", text, re.M | re.S
    ):
        rows = re.findall(r"^\| [^|]+ \| `([^`]+)` \|", match["body"], re.M)
        found[match["layout"]] = rows
    assert set(found) == set(WEBUIS) - {"flat"}
    for layout, folders in found.items():
        assert folders == [WEBUIS[layout].table[row] for row in ROWS], layout  # type: ignore[index]
