"""Every ```python block of README.md runs, against FakeCivitai, so the examples cannot
rot: a renamed function or argument fails here first.

Each block runs in a folder of its own holding what the examples name: a ComfyUI
install with the Detail Tweaker LoRA in it, ``image.png`` (an A1111 infotext naming
the fake's models) and, unless the block writes its own, a ``civit.toml``. The API
token and base URL come from the environment, as the README says.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

import civit
from civit.cli import cli
from civit.testing import FakeCivitai
from test_image_resources import a1111_infotext, make_png, text_chunk

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def python_blocks() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in BLOCK.finditer(text)]


def test_the_readme_has_library_examples() -> None:
    assert len(python_blocks()) >= 3


@pytest.mark.parametrize(("line", "code"), python_blocks(), ids=lambda v: str(v)[:12])
def test_readme_example_runs(
    line: int,
    code: str,
    fake: FakeCivitai,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CIVITAI_BASE_URL", fake.url)
    monkeypatch.setenv("CIVITAI_API_TOKEN", fake.token)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # for "~/.cache/civit-store"
    folder = tmp_path / "example"
    (folder / "ComfyUI" / "comfy").mkdir(parents=True)
    civit.get("328553", root=folder / "ComfyUI", layout="comfyui")
    (folder / "image.png").write_bytes(make_png(text_chunk("parameters", a1111_infotext(fake))))
    if "civit.freeze(" not in code:
        civit.write_manifest(
            folder / "civit.toml", ["328553", "7808"], settings={"root": "ComfyUI"}
        )
    monkeypatch.chdir(folder)

    namespace: dict[str, object] = {"__name__": "readme_example"}
    try:
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    except SystemExit as exit_:  # an example may end like a script
        assert exit_.code in (0, None), f"README.md:{line} exited {exit_.code}"
    for name, value in namespace.items():  # a test function the example defines
        if name.startswith("test_") and callable(value):
            value(tmp_path / name)


def command_list() -> dict[str, str]:
    """The README's command list: the text of each top-level command's lines (a line
    ``civit NAME ...`` and the indented lines that continue it)."""
    text = README.read_text(encoding="utf-8").split("## Commands", 1)[1].split("```")[1]
    entries: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if line.startswith("civit "):
            name = line.split()[1]
        if name:
            entries[name] = entries.get(name, "") + line + "\n"
    return entries


def test_the_command_list_names_every_command_and_option() -> None:
    """Every command and every option its --help shows is in the README's list (the
    options every command shares are described once, below it)."""
    from civit.cli.app import shared_options

    shared = {opt for param in shared_options(lambda: None).__click_params__ for opt in param.opts}
    entries = command_list()
    context = click.Context(cli)
    missing = []
    for name in cli.list_commands(context):
        command = cli.get_command(context, name)
        assert command is not None
        leaves = (
            [
                (f"{name} {sub}", command.get_command(context, sub))
                for sub in command.list_commands(context)
            ]
            if isinstance(command, click.Group)
            else [(name, command)]
        )
        for path, leaf in leaves:
            assert leaf is not None
            documented = entries.get(name, "")
            if path.split()[-1] not in documented:
                missing.append(path)
            for param in leaf.params:
                names = param.opts + param.secondary_opts
                undocumented = not any(name in documented for name in names)
                if isinstance(param, click.Option) and not set(names) & shared and undocumented:
                    missing.append(f"{path} {param.opts[-1]}")
    assert missing == []
