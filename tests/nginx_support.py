"""A real nginx (Debian's) in front of two ``smithers-dashboard serve`` instances, over TLS.

The ``nginx_proxy`` fixture (session scope) starts a replay Gateway with a token, two
dashboard instances on free loopback ports, and ``nginx -p DIR -c DIR/nginx.conf -g 'daemon
off;'`` with its own prefix, logs, pid file and temp directories (no system service, nothing
under ``/etc`` or ``/var``). The proxy's configuration is ``docs/nginx.conf.template`` (the
file docs/deploy.md documents) rendered by :func:`render_site`, included from a minimal
main ``nginx.conf``. The certificate is a fresh self-signed one for ``localhost`` and
``127.0.0.1`` (the ``cryptography`` package).

:func:`serve_behind_nginx` is the same setup without pytest and without the Gateway (the
caller brings one): the fixture and ``tests/benchmarks/bench_nginx.py`` both use it.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.deploy_support import Served, cli, free_port, poll, start_replay_gateway
from tests.recordings import recording

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = ["NGINX", "TEMPLATE", "TOKEN", "NginxProxy", "make_certificate", "nginx_proxy", "render_site",
           "serve_behind_nginx"]

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "docs" / "nginx.conf.template"
NGINX = "/usr/sbin/nginx"
TOKEN = "nginx-test-gateway-token-5e2f"


def render_site(*, listen: str, server_name: str, certificate: Path, certificate_key: Path,
                upstreams: Sequence[str]) -> str:
    """``docs/nginx.conf.template`` with its ``{{placeholders}}`` filled in."""
    values = {
        "listen": listen,
        "server_name": server_name,
        "certificate": str(certificate),
        "certificate_key": str(certificate_key),
        "upstream_servers": "\n".join(f"    server {address};" for address in upstreams),
    }
    text = TEMPLATE.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    assert "{{" not in text, "a placeholder of the template was left unfilled"
    return text


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` / ``127.0.0.1``: ``(cert.pem, key.pem)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def main_conf(prefix: Path, site: Path, *, worker_connections: int = 256) -> str:
    """The smallest main ``nginx.conf`` around the site file: everything under ``prefix``.

    The access log names each request's upstream and route (the test reads which instance
    served what). A proxied websocket holds two of the worker's ``worker_connections`` (the
    browser's and the upstream's) for as long as it is open."""
    temp = prefix / "tmp"
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers write under our (0700) temp dirs
    return (
        f"{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n"
        f"events {{ worker_connections {worker_connections}; }}\n"
        "http {\n"
        f"    include {site};\n"
        "    log_format routes '$request_uri $status $upstream_addr $sd_route';\n"
        f"    access_log {prefix}/access.log routes;\n"
        + "".join(f"    {kind}_temp_path {temp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + "}\n"
    )


@dataclass
class NginxProxy:
    """What :func:`serve_behind_nginx` started: ``base`` is nginx's public https URL.

    ``instances[i]`` is the plain-HTTP base URL of the dashboard ``servers[i]`` (loopback,
    reached directly, not through nginx); ``certificate`` is the test certificate nginx
    presents (a client that should verify it trusts this file)."""

    base: str
    port: int
    instances: list[str]
    gateway: str
    nginx: Served
    prefix: Path
    servers: list[Served]
    certificate: Path

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@contextlib.contextmanager
def serve_behind_nginx(directory: Path, gateway_url: str, *, instances: int = 2, token_file: Path | None = None,
                       env: Mapping[str, str] | None = None, worker_connections: int = 256,
                       certificate: tuple[Path, Path] | None = None) -> Iterator[NginxProxy]:
    """``instances`` dashboards (``smithers-dashboard serve``) on free loopback ports, nginx in front.

    Under ``directory``: ``serve-N.log`` (instance N's output), ``cert.pem`` / ``key.pem``
    (unless ``certificate`` gives nginx's ``(certificate, key)``: a client process that
    trusts one certificate can then meet several of these setups), and nginx's prefix
    ``prefix/`` (its configuration, ``access.log``, ``error.log``). ``env`` is the instances'
    whole environment (default: this process's). Everything started is stopped on exit; the
    logs stay."""
    if not Path(NGINX).exists():
        raise FileNotFoundError(f"{NGINX} is missing: scripts/test installs Debian's nginx-light")
    prefix = directory / "prefix"
    (prefix / "tmp").mkdir(parents=True)
    started: list[Served] = []
    try:
        nginx_port = free_port()
        bases: list[str] = []
        for index in range(instances):
            port = free_port()
            token = ["--token-file", str(token_file)] if token_file is not None else []
            served = Served(cli("serve", "--gateway", gateway_url, *token, "--port", str(port),
                                "--allow-websocket-origin", f"localhost:{nginx_port}"),
                            directory / f"serve-{index}.log", env=env)
            started.append(served)
            bases.append(f"http://127.0.0.1:{port}")
        servers = list(started)
        for served, base in zip(servers, bases, strict=True):
            served.wait_status(f"{base}/healthz")
        cert, key = certificate or make_certificate(directory)
        site = prefix / "smithers-dashboard.conf"
        site.write_text(render_site(listen=f"127.0.0.1:{nginx_port}", server_name="localhost", certificate=cert,
                                    certificate_key=key, upstreams=[b.removeprefix("http://") for b in bases]))
        conf = prefix / "nginx.conf"
        conf.write_text(main_conf(prefix, site, worker_connections=worker_connections))
        check = Served([NGINX, "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
                       directory / "nginx-t.log")
        poll(lambda: not check.alive(), 30, "nginx -t")
        assert check.process.returncode == 0, f"nginx -t refused the rendered template:\n{check.log()}"
        check.stop()
        nginx = Served([NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf),
                        "-g", "daemon off;"], directory / "nginx.log")
        started.append(nginx)
        base = f"https://localhost:{nginx_port}"
        nginx.wait_status(f"{base}/healthz", verify=False)
        yield NginxProxy(base, nginx_port, bases, gateway_url, nginx, prefix, servers, cert)
    finally:
        for served in reversed(started):
            with contextlib.suppress(Exception):
                served.stop()
        shutil.rmtree(prefix / "tmp", ignore_errors=True)


@pytest.fixture(scope="session")
def nginx_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    """nginx (TLS, sticky, websockets) in front of two dashboards on a replay Gateway."""
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} is missing: scripts/test installs Debian's nginx-light")
    tmp = tmp_path_factory.mktemp("nginx")
    token_file = tmp / "gateway-token"
    token_file.write_text(TOKEN)
    gateway: Served | None = None
    try:
        # The wide run streams for ~30 s: long enough to watch it move after a page connects.
        gateway, gateway_url = start_replay_gateway([recording("rich-run.jsonl"), recording("wide-run.jsonl")],
                                                    tmp / "gateway.log", token_file=token_file)
        with serve_behind_nginx(tmp, gateway_url, token_file=token_file) as proxy:
            yield proxy
    finally:
        if gateway is not None:
            with contextlib.suppress(Exception):
                gateway.stop()


def fetch_metrics(base: str) -> dict[str, float]:
    """An instance's ``/metrics`` as ``{name: value}`` (unlabelled samples only)."""
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return {s.name: s.value for f in text_string_to_metric_families(response.text) for s in f.samples if not s.labels}
