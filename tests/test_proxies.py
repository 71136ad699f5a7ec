"""Proxies and TLS trust: the API client and the download engine take the same way out.

FakeCivitai's origins are named ``civitai.test`` and ``cdn.test``, names only the
loopback proxy resolves: a request that skips the proxy cannot even find its host.
Over TLS the proxy sees a CONNECT and ciphertext; over plain HTTP absolute-URI requests.
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from civit import Client, Hashes, RetryPolicy, get
from civit.cdn import Storage
from civit.config import load_settings
from civit.errors import NetworkError, UsageError
from civit.network import ProxyRules, proxy_rules, tls_context
from civit.testing import Catalog, FakeCivitai, FakeModel, LoopbackProxy
from civit.testing.proxy import ProxiedRequest
from civit.transfer import fetch

NAMES = {"civitai.test": "127.0.0.1", "cdn.test": "127.0.0.1"}
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
FAST_ENGINE = {"retry_base": 0.01, "stall_timeout": 2.0}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("CIVIT_PROXY", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    tls_context.cache_clear()
    yield
    tls_context.cache_clear()


def named_fake(default_models: list[FakeModel], *, tls: bool) -> FakeCivitai:
    return FakeCivitai(
        catalog=Catalog(default_models), api_name="civitai.test", cdn_name="cdn.test", tls=tls
    )


def targets(proxy: LoopbackProxy, method: str) -> list[str]:
    return [r.target for r in proxy.requests if r.method == method]


def no_token_beyond_the_api(requests: list[ProxiedRequest], token: str) -> None:
    for request in requests:
        if "cdn.test" in request.target:
            assert "authorization" not in request.headers
            assert token not in json.dumps(request.headers)
            assert token not in request.target


@pytest.mark.parametrize("tls", [True, False], ids=["https-connect", "http-absolute-uri"])
def test_api_and_downloads_go_through_the_environment_proxy(
    default_models: list[FakeModel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tls: bool,
) -> None:
    with named_fake(list(default_models), tls=tls) as fake, LoopbackProxy(NAMES) as proxy:
        monkeypatch.setenv("HTTPS_PROXY" if tls else "HTTP_PROXY", proxy.url)
        if tls:
            monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca_file))  # a corporate root, say
        with Client(base_url=fake.url, token=fake.token) as client:
            result = get("827184", client=client, dest=tmp_path, connections=2, **FAST_ENGINE)
        assert result.path.read_bytes() == fake.file(2402203).content
        assert fake.errors == []
    if tls:
        tunnels = targets(proxy, "CONNECT")
        assert any(t.startswith("civitai.test:") for t in tunnels)
        assert any(t.startswith("cdn.test:") for t in tunnels)
        assert all("authorization" not in r.headers for r in proxy.requests)  # end to end
    else:
        urls = targets(proxy, "GET")
        assert any(u.startswith("http://civitai.test:") for u in urls)
        assert any(u.startswith("http://cdn.test:") for u in urls)
        no_token_beyond_the_api(proxy.requests, fake.token)


def test_without_the_proxy_the_names_do_not_resolve(
    default_models: list[FakeModel], tmp_path: Path
) -> None:
    with (
        named_fake(list(default_models), tls=False) as fake,
        Client(base_url=fake.url, token=fake.token, retry=RetryPolicy(attempts=1)) as client,
        pytest.raises(NetworkError, match="cannot reach"),
    ):
        get("827184", client=client, dest=tmp_path, **FAST_ENGINE)


def test_the_proxy_setting_wins_and_credentials_go_to_the_proxy_only(
    default_models: list[FakeModel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    civit_cli: Callable[..., object],
) -> None:
    with (
        named_fake(list(default_models), tls=True) as fake,
        LoopbackProxy(NAMES, credentials=("alice", "s3cret")) as proxy,
    ):
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # a dead one: overridden
        monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca_file))
        monkeypatch.setenv("CIVITAI_BASE_URL", fake.url)
        monkeypatch.setenv("CIVITAI_API_TOKEN", fake.token)
        run = civit_cli("--proxy", proxy.url, "get", "328553", "--dest", tmp_path, "--json")
        assert run.code == 0, run.err  # type: ignore[attr-defined]
        assert "s3cret" not in run.out + run.err  # type: ignore[attr-defined]
        shown = civit_cli("--proxy", proxy.url, "config", "show")
        assert "s3cret" not in shown.out and "127.0.0.1" in shown.out  # type: ignore[attr-defined]
    tunnels = targets(proxy, "CONNECT")
    assert any(t.startswith("cdn.test:") for t in tunnels)
    assert all(r.status == 200 for r in proxy.requests)


def test_a_proxy_that_wants_credentials_is_said_plainly(
    default_models: list[FakeModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        named_fake(list(default_models), tls=True) as fake,
        LoopbackProxy(NAMES, credentials=("alice", "s3cret")) as proxy,
    ):
        bare = proxy.url.replace("alice:s3cret@", "")
        monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca_file))
        link = fake.cdn_link(3000001)
        with pytest.raises(NetworkError, match="proxy wants credentials"):
            fetch(
                lambda: link,
                tmp_path / "lora.safetensors",
                expected=Hashes(sha256=fake.file(3000001).sha256),
                file_key="test:lora",
                proxies=proxy_rules(bare),
                **FAST_ENGINE,  # type: ignore[arg-type]
            )


class KeepAliveProxy(http.server.BaseHTTPRequestHandler):
    """A proxy that keeps its client's connection open between requests (as real ones
    do; LoopbackProxy closes it after one) and answers ranged GETs of ``BODY`` itself
    when they carry its credentials."""

    protocol_version = "HTTP/1.1"
    BODY = bytes(range(20))
    CREDENTIALS = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    seen: list[tuple[int, bool]]  # (client port, credentials sent) per request

    def do_GET(self) -> None:
        sent = self.headers.get("Proxy-Authorization") == self.CREDENTIALS
        self.seen.append((self.client_address[1], sent))
        if not sent:
            self.send_response(407)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        first, _, last = self.headers["Range"].removeprefix("bytes=").partition("-")
        start, end = int(first), int(last) + 1
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(self.BODY)}")
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        self.wfile.write(self.BODY[start:end])

    def log_message(self, *args: object) -> None:
        pass


def test_a_kept_alive_connection_through_a_proxy_still_sends_its_credentials() -> None:
    """Every absolute-URI request carries Proxy-Authorization, the first on a connection
    and the next ones on it alike (a proxy's Basic auth is per request)."""
    KeepAliveProxy.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeepAliveProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = f"http://alice:s3cret@127.0.0.1:{server.server_address[1]}"
    storage = Storage(timeout=5, proxies=ProxyRules(http=proxy))
    try:
        first = storage.get("http://cdn.test/f?sig=1", 0, 10, None, accept_full=True)
        assert first.response.read() == KeepAliveProxy.BODY[:10]
        first.response.close()
        second = storage.get("http://cdn.test/f?sig=1", 10, 20, None, reuse=first.connection)
        assert second.response.read() == KeepAliveProxy.BODY[10:]
        storage.close(second.connection)
    finally:
        server.shutdown()
        server.server_close()
    (port, _), (again, _) = KeepAliveProxy.seen
    assert port == again  # the second request went over the first one's connection
    assert [sent for _, sent in KeepAliveProxy.seen] == [True, True]


@pytest.mark.parametrize(
    ("environment", "url", "expected"),
    [
        ({"HTTPS_PROXY": "http://p:1"}, "https://civitai.com/x", "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1"}, "http://civitai.com/x", None),
        ({"HTTP_PROXY": "p:2"}, "http://civitai.com/x", "http://p:2"),
        ({"ALL_PROXY": "http://p:3"}, "https://cdn.test/x", "http://p:3"),
        (
            {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:1"},
            "https://a/",
            "http://low:1",
        ),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "civitai.com"}, "https://civitai.com/", None),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "civitai.com"}, "https://b.civitai.com/", None),
        (
            {"ALL_PROXY": "http://p:3", "NO_PROXY": ".civitai.com"},
            "https://civitai.com/",
            "http://p:3",
        ),
        (
            {"ALL_PROXY": "http://p:3", "NO_PROXY": "notcivitai.com"},
            "https://civitai.com/",
            "http://p:3",
        ),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "*"}, "https://civitai.com/", None),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "127.0.0.1"}, "http://127.0.0.1:5/", None),
        ({"ALL_PROXY": "http://p:3", "NO_PROXY": "cdn.test:8443"}, "https://cdn.test:8443/", None),
        (
            {"ALL_PROXY": "http://p:3", "NO_PROXY": "cdn.test:8443"},
            "https://cdn.test/",
            "http://p:3",
        ),
    ],
)
def test_proxy_rules_read_the_environment_like_httpx(
    environment: dict[str, str], url: str, expected: str | None
) -> None:
    assert proxy_rules(environ=environment).proxy_for(url) == expected


def test_the_proxy_setting_overrides_the_environment_and_none_turns_it_off() -> None:
    environment = {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "cdn.test"}
    chosen = proxy_rules("http://setting:2", environ=environment)
    assert chosen.proxy_for("https://civitai.com/") == "http://setting:2"
    assert chosen.proxy_for("https://cdn.test/") is None
    assert proxy_rules("none", environ=environment) == ProxyRules()
    settings = load_settings({"proxy": "http://flag:3"}, environ={"CIVIT_PROXY": "http://v:4"})
    assert settings.proxy == "http://flag:3"
    assert "secret" not in repr(load_settings({"proxy": "http://u:secret@p:1"}, environ={}))


@pytest.mark.parametrize(
    "value", ["socks5://p:1080", "https://p:443", "http://p:notaport", "http://[::1", "http://"]
)
def test_unsupported_proxies_are_usage_errors(value: str) -> None:
    with pytest.raises(UsageError, match="HTTP proxies"):
        proxy_rules(value)


def test_a_proxy_that_cannot_be_reached_is_named_without_its_credentials(
    default_models: list[FakeModel],
) -> None:
    with socket.socket() as closed:  # a loopback port nothing listens on once closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = load_settings({"proxy": f"http://alice:s3cret@127.0.0.1:{port}"}, environ={})
    with (
        named_fake(list(default_models), tls=False) as fake,
        Client(base_url=fake.url, settings=settings, retry=RetryPolicy(attempts=1)) as client,
        pytest.raises(NetworkError, match=f"through the proxy http://127.0.0.1:{port} ") as info,
    ):
        client.get_model(328553)
    assert "s3cret" not in str(info.value) and "alice" not in str(info.value)
    assert "and the proxy" in (info.value.hint or "")
