"""Issue 13.3: secrets pasted into refs are never echoed, stored or reported.

Civitai tells people to append ``?token=`` to download links, presigned storage links
carry ``X-Amz-*``/``sig`` values, and URLs may hold ``user:secret@``. civit shows and
stores every ref through :func:`civit.refs.redact_ref`, and uses a pasted token as the
API token (as a header, to the API origin only) when none is set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import civit
from civit.errors import redact_url
from civit.refs import parse_ref, pasted_token, redact_ref
from civit.testing import FakeCivitai

SECRET = "S3CR3T-value"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            f"https://civitai.com/api/download/models/1?token={SECRET}",
            "https://civitai.com/api/download/models/1",
        ),
        (
            f"https://me:{SECRET}@civitai.com/models/2?modelVersionId=3&token={SECRET}",
            "https://civitai.com/models/2?modelVersionId=3",
        ),
        (f"me:{SECRET}@civitai.com/models/2", "civitai.com/models/2"),
        (
            f"civitai.com/api/download/models/1?type=Pruned%20Model&X-Amz-Signature={SECRET}"
            f"&X-Amz-Credential={SECRET}&sig={SECRET}&Signature={SECRET}#token={SECRET}",
            "civitai.com/api/download/models/1?type=Pruned%20Model",
        ),
        (f"http://[::1/x?TOKEN={SECRET}", "http://[::1/x"),
        ("827184@2514310", "827184@2514310"),
        ("urn:air:sdxl:lora:civitai:328553@368189", "urn:air:sdxl:lora:civitai:328553@368189"),
    ],
)
def test_redact_ref_drops_credentials_and_keeps_the_meaning(text: str, shown: str) -> None:
    assert redact_ref(text) == shown
    assert SECRET not in redact_ref(text)
    if "[" not in text:
        assert parse_ref(redact_ref(text)) == parse_ref(text)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://u:{SECRET}@cdn.example/f?X-Amz-Signature={SECRET}#x", "https://cdn.example/f"),
        (f"http://u:{SECRET}@127.0.0.1:notaport/x?sig={SECRET}", "http://127.0.0.1:notaport/x"),
        (f"http://u:{SECRET}@[::1/x?sig={SECRET}", "http://[::1/x"),
        (f"http://u:{SECRET}@h:99999/x#{SECRET}", "http://h:99999/x"),
    ],
)
def test_redact_url_never_fails(url: str, shown: str) -> None:
    """Messages name URLs through redact_url; one Python cannot parse (a bad port in an
    endpoint or a redirect) raised ValueError, an internal error."""
    assert redact_url(url) == shown


def test_pasted_token() -> None:
    assert pasted_token(f"https://civitai.com/api/download/models/1?fileId=2&token={SECRET}") == (
        SECRET
    )
    assert pasted_token("civitai.com/models/1?token=") is None
    assert pasted_token("827184") is None


def test_get_json_and_error_lines_never_show_a_pasted_secret(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    good = f"https://civitai.com/api/download/models/368189?fileId=3000001&X-Amz-Signature={SECRET}"
    archived = f"https://me:{SECRET}@civitai.com/models/99001?token={SECRET}"
    run = civit_cli("get", good, archived, "--dest", tmp_path, "--json")
    assert run.code == 4
    assert SECRET not in run.out + run.err
    documents = json.loads(run.out)
    assert [d["ref"] for d in documents] == [
        "https://civitai.com/api/download/models/368189?fileId=3000001",
        "https://civitai.com/models/99001",
    ]
    assert "civit: error: https://civitai.com/models/99001: " in run.err


def test_a_pasted_token_is_used_as_the_api_token_and_never_sent_in_a_url(
    civit_cli, fake: FakeCivitai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CIVITAI_API_TOKEN")
    ref = f"https://civitai.com/api/download/models/368189?fileId=3000001&token={fake.token}"
    run = civit_cli("get", ref, "--dest", tmp_path, "--json")
    assert run.code == 0, run.err
    assert fake.token not in run.out + run.err
    assert (tmp_path / "add-detail-xl.safetensors").is_file()
    for request in fake.requests:
        assert fake.token not in json.dumps(request.query)
        bearer = request.headers.get("authorization")
        assert bearer == (f"Bearer {fake.token}" if request.origin == "api" else None)
    assert any(r.path.startswith("/api/download/") for r in fake.requests)


def test_an_explicit_token_wins_over_a_pasted_one(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    ref = "https://civitai.com/api/download/models/368189?fileId=3000001&token=wrong-token"
    run = civit_cli("get", ref, "--dest", tmp_path)
    assert run.code == 0, run.err
    assert all("wrong-token" not in str(r.headers) for r in fake.requests)


def test_lock_and_report_never_hold_a_pasted_secret(
    civit_cli, fake: FakeCivitai, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    manifest = civit.write_manifest(
        project / "civit.toml",
        [f"https://me:{SECRET}@civitai.com/models/328553?token={SECRET}"],
        settings={"dest": "models"},
    )
    assert civit_cli("lock", "-f", manifest.path).code == 0
    lock_text = manifest.lock_path.read_text()
    assert SECRET not in lock_text
    assert 'ref = "https://civitai.com/models/328553"' in lock_text
    # A lock edited (or written by an older civit) with the token in its ref:
    manifest.lock_path.write_text(
        lock_text.replace(
            'ref = "https://civitai.com/models/328553"',
            f'ref = "https://civitai.com/models/328553?token={SECRET}"',
        )
    )
    report = tmp_path / "report.json"
    run = civit_cli("install", "-f", manifest.path, "--frozen", "--report", report)
    assert run.code == 0, run.err
    assert SECRET not in report.read_text() + run.out + run.err
    assert json.loads(report.read_text())["entries"][0]["ref"] == (
        "https://civitai.com/models/328553"
    )
