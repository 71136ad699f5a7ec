"""How civit reaches a host: which proxy (if any), and which certificates to trust.

One set of rules serves the API client (httpx) and the download engine
(:mod:`http.client`), so both always take the same way out:

- the ``proxy`` setting (``--proxy``, ``CIVIT_PROXY``, ``proxy =`` in the config) is
  used for every URL; ``none`` turns proxies off, environment included;
- otherwise the usual environment variables, read as httpx and curl read them:
  ``https_proxy`` for ``https://`` URLs, ``http_proxy`` for ``http://``, ``all_proxy``
  for both (lower case wins over upper case);
- ``no_proxy`` lists hosts reached directly: ``*`` (everything), ``example.com`` (it
  and its subdomains), ``.example.com`` (subdomains only), ``host:port``, IP addresses.

Proxies are HTTP proxies: ``https://`` URLs go through a ``CONNECT`` tunnel (the proxy
sees the host name, never the request, so the API token stays end to end), ``http://``
URLs as absolute-URI requests. ``user:password@`` in the proxy URL becomes
``Proxy-Authorization: Basic`` for the proxy alone.

TLS trusts the operating system's certificate store through ``truststore`` (so a
corporate TLS-inspecting proxy whose root the IT department installed just works),
falling back to certifi's bundle; ``SSL_CERT_FILE``/``SSL_CERT_DIR`` add to either.
"""

from __future__ import annotations

import base64
import functools
import http.client
import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx

from civit.errors import UsageError

__all__ = [
    "ProxyRules",
    "connect",
    "httpx_mounts",
    "proxy_rules",
    "request_target",
    "tls_context",
]

DISABLED = ("none", "direct", "off")


@dataclass(frozen=True)
class ProxyRules:
    """Which proxy each URL goes through (see the module docstring)."""

    http: str | None = None
    https: str | None = None
    no_proxy: tuple[str, ...] = ()

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL for ``url``, or ``None`` to connect directly.

        >>> rules = ProxyRules(https="http://proxy:3128", no_proxy=("example.com",))
        >>> rules.proxy_for("https://civitai.com/api"), rules.proxy_for("https://a.example.com/")
        ('http://proxy:3128', None)
        """
        parts = urlsplit(url)
        proxy = {"http": self.http, "https": self.https}.get(parts.scheme)
        if proxy is None or self._bypassed(parts.hostname or "", parts.port):
            return None
        return proxy

    def _bypassed(self, host: str, port: int | None) -> bool:
        host = host.lower().rstrip(".")
        for entry in self.no_proxy:
            if entry == "*":
                return True
            name, entry_port = _split_host_port(entry)
            if entry_port is not None and entry_port != port:
                continue
            if name.startswith("."):
                if host.endswith(name):
                    return True
            elif host == name or host.endswith("." + name):
                return True
        return False


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1]:8080
        name, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return name, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, int(port) if port.isdigit() else None
    return entry, None


def _normalise_proxy(value: str, source: str) -> str:
    value = value.strip()
    if "://" not in value:
        value = "http://" + value  # httpx and curl read "host:3128" as an HTTP proxy
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # "http://[::1" or a port that is not a number
        parts, port = urlsplit(""), -1
    if parts.scheme.lower() != "http" or not parts.hostname or port == -1:
        shown = parts.scheme + "://" + (parts.hostname or "?") if parts.scheme else "?"
        raise UsageError(
            f"unsupported proxy {shown} ({source}): civit speaks to HTTP proxies "
            "(http://host:port, with CONNECT for https)",
            hint="use the HTTP port of your proxy, e.g. http://proxy.example:3128",
        )
    return value


def _environment_proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """``{scheme: url}`` from ``*_proxy`` variables; lower case wins, as in urllib."""
    found: dict[str, str] = {}
    for name in ("http", "https", "all", "no"):
        for variable in (f"{name}_proxy", f"{name.upper()}_PROXY"):
            value = environ.get(variable, "").strip()
            if value:
                found[name] = value
                break
    return found


def proxy_rules(setting: str | None = None, environ: Mapping[str, str] | None = None) -> ProxyRules:
    """The proxy rules from the ``proxy`` setting and the environment.

    Raises:
        UsageError: a proxy URL that is not an ``http://`` proxy.
    """
    environ = os.environ if environ is None else environ
    found = _environment_proxies(environ)
    no_proxy = tuple(
        entry.strip().lower() for entry in found.get("no", "").split(",") if entry.strip()
    )
    if setting is not None and setting.strip():
        if setting.strip().lower() in DISABLED:
            return ProxyRules()
        proxy = _normalise_proxy(setting, "the proxy setting")
        return ProxyRules(http=proxy, https=proxy, no_proxy=no_proxy)
    every = found.get("all")
    http = found.get("http", every)
    https = found.get("https", every)
    return ProxyRules(
        http=_normalise_proxy(http, "http_proxy") if http else None,
        https=_normalise_proxy(https, "https_proxy") if https else None,
        no_proxy=no_proxy,
    )


@functools.lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The TLS context of every connection civit makes (built once per process).

    The OS trust store where ``truststore`` works here, else certifi's bundle; plus
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set.
    """
    context: ssl.SSLContext
    try:
        import truststore

        context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    except (ImportError, OSError, ssl.SSLError):  # pragma: no cover - no truststore here
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    extra_file = os.environ.get("SSL_CERT_FILE") or None
    extra_dir = os.environ.get("SSL_CERT_DIR") or None
    if extra_file or extra_dir:
        try:
            context.load_verify_locations(cafile=extra_file, capath=extra_dir)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"cannot load certificates from SSL_CERT_FILE/SSL_CERT_DIR: {exc}"
            ) from exc
    return context


def httpx_mounts(rules: ProxyRules) -> dict[str, httpx.BaseTransport | None]:
    """The same rules as httpx transports (``mounts=``): a proxy per scheme, and direct
    connections (``None``) for the ``no_proxy`` hosts."""
    if "*" in rules.no_proxy:
        return {}
    mounts: dict[str, httpx.BaseTransport | None] = {}
    for scheme, proxy in (("http", rules.http), ("https", rules.https)):
        if proxy:
            # A Proxy, not the URL string: httpx before 0.26 takes only that, and the
            # A1111/Forge launchers pin httpx==0.24.1 into the environments they manage.
            transport = httpx.HTTPTransport(proxy=httpx.Proxy(proxy), verify=tls_context())
            mounts[f"{scheme}://"] = transport
    if not mounts:
        return {}
    for entry in rules.no_proxy:
        name, port = _split_host_port(entry)
        host = f"[{name}]" if ":" in name else name
        # httpx reads "*example.com" as the domain and its subdomains, "*.example.com"
        # as subdomains only: the same as no_proxy's "example.com" and ".example.com".
        pattern = f"*{host}" if not _is_ip(name) else host
        mounts[f"all://{pattern}" + (f":{port}" if port is not None else "")] = None
    return mounts


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _proxy_authorization(proxy: str) -> dict[str, str]:
    parts = urlsplit(proxy)
    if parts.username is None:
        return {}
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def connect(url: str, *, proxy: str | None, timeout: float) -> http.client.HTTPConnection:
    """A (not yet connected) connection for GETs of ``url``, directly or via ``proxy``;
    what each request on it sends comes from :func:`request_target`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    if proxy is None:
        if secure:
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=tls_context())
        return http.client.HTTPConnection(host, port, timeout=timeout)
    via = urlsplit(proxy)
    proxy_host, proxy_port = via.hostname or "", via.port or 80
    if secure:
        tunnel = http.client.HTTPSConnection(
            proxy_host, proxy_port, timeout=timeout, context=tls_context()
        )
        tunnel.set_tunnel(_bracketed(host), port, headers=_proxy_authorization(proxy))
        return tunnel
    return http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)


def request_target(url: str, proxy: str | None) -> tuple[str, dict[str, str]]:
    """What every GET of ``url`` sends on a connection :func:`connect` made, the first
    one or a kept-alive one's next.

    Returns:
        ``(request target, extra headers)``: the target is the path and query, or the
        whole URL for an ``http://`` URL sent to a proxy; the extra headers then carry
        the proxy's credentials, which a proxy wants on each request (a tunnel's went
        once, with its ``CONNECT``).

    >>> request_target("http://cdn.test/f?sig=1", "http://u:p@proxy:3128")
    ('http://cdn.test:80/f?sig=1', {'Proxy-Authorization': 'Basic dTpw'})
    >>> request_target("https://cdn.test/f?sig=1", "http://u:p@proxy:3128")
    ('/f?sig=1', {})
    """
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if proxy is None or parts.scheme == "https":
        return path, {}
    host = _bracketed(parts.hostname or "")
    return f"http://{host}:{parts.port or 80}{path}", _proxy_authorization(proxy)


def _bracketed(host: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host
