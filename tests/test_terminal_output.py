"""Issue 13.10: text from the network never drives the terminal.

A hostile model record (name, creator, tags, file names) and a hostile API error text
carry ESC/OSC/CSI sequences, BEL, C1 controls and bidi overrides. Human output shows
them as ``?``; ``--json`` keeps the data exact (escaped, so the raw bytes never reach
the terminal either).
"""

from __future__ import annotations

import json
import re

from civit.cli.output import printable
from civit.testing import FakeCivitai, FakeFile, FakeModel, FakeVersion, make_safetensors

# Retitle the window, clear the screen, an 8-bit CSI, a bidi override, a bare CR.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil\r"
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def hostile_model() -> FakeModel:
    file = FakeFile(
        7_700_001,
        f"lora{HOSTILE}.safetensors",
        make_safetensors(4096, 7_700_001),
        primary=True,
    )
    version = FakeVersion(7_700_101, f"v1{HOSTILE}", "SDXL 1.0", "2024-05-01T00:00:00Z", [file])
    return FakeModel(
        7_700_000,
        f"Nice model{HOSTILE}",
        "LORA",
        f"creator{HOSTILE}",
        [version],
        tags=[f"tag{HOSTILE}"],
    )


def test_printable_replaces_every_control_character_but_tab_and_newline() -> None:
    assert printable("a\tb\nc") == "a\tb\nc"
    assert printable(HOSTILE) == "?]0;pwned??[2J?31m?evil?"
    assert printable("\u2066x\u2069\u200f\u061c") == "?x???"
    assert printable("größe 模型 🙂") == "größe 模型 🙂"


def test_info_and_search_show_hostile_names_without_control_characters(
    civit_cli, fake: FakeCivitai
) -> None:
    fake.add_model(hostile_model())
    shown = civit_cli("info", "7700000")
    assert shown.code == 0, shown.err
    assert "Nice model?]0;pwned" in shown.out
    assert not RAW_CONTROL.search(shown.out + shown.err)

    found = civit_cli("search", "Nice model", "--limit", "5")
    assert found.code == 0, found.err
    assert "7700000" in found.out
    assert not RAW_CONTROL.search(found.out + found.err)


def test_json_keeps_hostile_names_exact_but_escaped(civit_cli, fake: FakeCivitai) -> None:
    fake.add_model(hostile_model())
    shown = civit_cli("info", "7700000", "--json")
    assert shown.code == 0, shown.err
    assert not RAW_CONTROL.search(shown.out)
    document = json.loads(shown.out)
    assert document["name"] == f"Nice model{HOSTILE}"
    assert document["tags"] == [f"tag{HOSTILE}"]


def test_an_api_error_text_cannot_clear_the_screen_even_off_a_terminal(
    civit_cli, fake: FakeCivitai
) -> None:
    fake.fail_api(404, body=json.dumps({"error": f"No model{HOSTILE}"}))
    failed = civit_cli("info", "827184")
    assert failed.code == 4
    assert "No model?]0;pwned" in failed.err
    assert not RAW_CONTROL.search(failed.err)


def test_a_downloaded_hostile_name_is_printed_safely(
    civit_cli, fake: FakeCivitai, tmp_path
) -> None:
    fake.add_model(hostile_model())
    got = civit_cli("get", "7700000", "--dest", tmp_path)
    assert got.code == 0, got.err
    assert not RAW_CONTROL.search(got.out + got.err)
    (saved,) = tmp_path.iterdir()
    assert not RAW_CONTROL.search(saved.name)
