from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civit.errors import UsageError
from civit.layouts import path_inside, safe_filename


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("model.safetensors", "model.safetensors"),
        ("../../escape.pt", "escape.pt"),
        ("/etc/passwd", "passwd"),
        ("C:\\x\\y.ckpt", "y.ckpt"),
        ("C:y.ckpt", "C_y.ckpt"),
        ("dir/", "dir"),
        ("evil\x07\nname.safetensors", "evilname.safetensors"),
        ("nul\x00byte.pt", "nulbyte.pt"),
        ("del\x7fete.pt", "delete.pt"),
        ("photo\u202egpj.exe", "photogpj.exe"),
        ("CON.safetensors", "_CON.safetensors"),
        ("con.tar.gz", "_con.tar.gz"),
        ("nul", "_nul"),
        ("Com1.pt", "_Com1.pt"),
        ("LPT9", "_LPT9"),
        ("COM¹.txt", "_COM¹.txt"),
        ("CON .txt", "_CON .txt"),
        ("CONSOLE.safetensors", "CONSOLE.safetensors"),
        ("COM10.pt", "COM10.pt"),
        ('a<b>c:d"e|f?g*h.pt', "a_b_c_d_e_f_g_h.pt"),
        ("  .hidden.safetensors. . ", "hidden.safetensors"),
        ("a..b...c.pt", "a.b.c.pt"),
        ("モデル.safetensors", "モデル.safetensors"),
        ("Ünïcödé 模型 v2.safetensors", "Ünïcödé 模型 v2.safetensors"),
        ("file name with spaces.ckpt", "file name with spaces.ckpt"),
        ("big.safetensors.part", "big.safetensors_part"),
        ("big.safetensors.PART", "big.safetensors_PART"),
        ("big.safetensors.part.json", "big.safetensors_part.json"),
        ("model.partial", "model.partial"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


@pytest.mark.parametrize(
    "name", ["", ".", "..", "...", "/", "\\", "../..", " . ", "\x00\x01", "a/"]
)
def test_safe_filename_falls_back_to_the_default(name: str) -> None:
    expected = "a" if name == "a/" else "model.safetensors"
    assert safe_filename(name) == expected
    assert safe_filename(name, default="../vae.pt") == ("a" if name == "a/" else "vae.pt")


def test_safe_filename_needs_a_usable_default() -> None:
    with pytest.raises(ValueError, match="not usable"):
        safe_filename("..", default="..")


def test_long_names_keep_their_extension() -> None:
    safe = safe_filename("x" * 300 + ".safetensors")
    assert safe == "x" * 188 + ".safetensors"
    assert len(safe.encode()) == 200
    japanese = safe_filename("モ" * 100 + ".safetensors")  # 3 bytes a character
    assert japanese.endswith("モ.safetensors")
    assert len(japanese.encode()) <= 200
    assert japanese.encode().decode() == japanese
    dotted = safe_filename("x" * 150 + "." + "y" * 100)  # a 100-byte "extension" is not one
    assert dotted == "x" * 150 + "." + "y" * 49
    spaced = safe_filename("a" + " " * 250 + ".pt")
    assert spaced == "a.pt"


names = st.one_of(
    st.text(),
    st.text(
        alphabet=st.sampled_from(["a", "モ", ".", " ", "/", "\\", ":", "\x00", "\n", "C", "O", "N"])
    ),
    st.builds(
        lambda stem, ext: f"{stem}.{ext}",
        st.sampled_from(["CON", "nul", "com1", "LPT3", "aux ", ".", ".."]),
        st.sampled_from(["safetensors", "pt", "", " "]),
    ),
    st.text(min_size=190, max_size=400),
)
FORBIDDEN = set('/\\<>:"|?*') | {chr(c) for c in range(32)} | {"\x7f"}


@given(names)
def test_safe_filename_properties(name: str) -> None:
    safe = safe_filename(name)
    assert safe not in ("", ".", "..")
    assert not FORBIDDEN & set(safe)
    assert safe == safe.strip().strip(".")
    assert ".." not in safe
    assert len(safe.encode()) <= 200
    assert safe_filename(safe) == safe


def test_path_inside_returns_a_child(tmp_path: Path) -> None:
    assert path_inside(tmp_path, "../../escape.pt") == tmp_path / "escape.pt"
    assert path_inside(tmp_path / "new", "a.pt") == tmp_path / "new" / "a.pt"
    assert path_inside(tmp_path, "..", default="vae.pt") == tmp_path / "vae.pt"


def test_path_inside_refuses_a_symlink_leading_out(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    outside = tmp_path / "victim.txt"
    outside.write_text("keep me")
    (folder / "model.safetensors").symlink_to(outside)
    with pytest.raises(UsageError, match="outside"):
        path_inside(folder, "model.safetensors")
    (folder / "sub").mkdir()
    (folder / "inner.pt").symlink_to(folder / "sub" / "x.pt")
    assert path_inside(folder, "inner.pt") == folder / "inner.pt"


def test_path_inside_follows_a_symlinked_folder(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert path_inside(link, "a.pt") == link / "a.pt"


@pytest.fixture(scope="module")
def models_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@given(name=names)
def test_path_inside_is_always_a_direct_child(models_folder: Path, name: str) -> None:
    folder = models_folder
    path = path_inside(folder, name)
    assert path.parent == folder
    assert path.name == safe_filename(name)
