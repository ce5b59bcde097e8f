"""A real nginx (Debian's) in front of two ``smithers-dashboard serve`` instances, over TLS.

The ``nginx_proxy`` fixture (session scope) starts a replay Gateway with a token, two
dashboard instances on free loopback ports, and ``nginx -p DIR -c DIR/nginx.conf -g 'daemon
off;'`` with its own prefix, logs, pid file and temp directories (no system service, nothing
under ``/etc`` or ``/var``). The proxy's configuration is ``docs/nginx.conf.template`` (the
file docs/deploy.md documents) rendered by :func:`render_site`, included from a minimal
main ``nginx.conf``. The certificate is a fresh self-signed one for ``localhost`` and
``127.0.0.1`` (the ``cryptography`` package).
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
    from collections.abc import Iterator, Sequence

__all__ = ["NGINX", "TEMPLATE", "TOKEN", "NginxProxy", "make_certificate", "nginx_proxy", "render_site"]

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


def main_conf(prefix: Path, site: Path) -> str:
    """The smallest main ``nginx.conf`` around the site file: everything under ``prefix``.

    The access log names each request's upstream and route (the test reads which instance
    served what)."""
    temp = prefix / "tmp"
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers write under our (0700) temp dirs
    return (
        f"{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    include {site};\n"
        "    log_format routes '$request_uri $status $upstream_addr $sd_route';\n"
        f"    access_log {prefix}/access.log routes;\n"
        + "".join(f"    {kind}_temp_path {temp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + "}\n"
    )


@dataclass
class NginxProxy:
    """What the fixture started: ``base`` is nginx's public https URL."""

    base: str
    port: int
    instances: list[str]
    gateway: str
    nginx: Served
    prefix: Path

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@pytest.fixture(scope="session")
def nginx_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    """nginx (TLS, sticky, websockets) in front of two dashboards on a replay Gateway."""
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} is missing: scripts/test installs Debian's nginx-light")
    tmp = tmp_path_factory.mktemp("nginx")
    prefix = tmp / "prefix"
    (prefix / "tmp").mkdir(parents=True)
    token_file = tmp / "gateway-token"
    token_file.write_text(TOKEN)
    started: list[Served] = []
    try:
        # The wide run streams for ~30 s: long enough to watch it move after a page connects.
        gateway, gateway_url = start_replay_gateway([recording("rich-run.jsonl"), recording("wide-run.jsonl")],
                                                    tmp / "gateway.log", token_file=token_file)
        started.append(gateway)
        nginx_port = free_port()
        instances: list[str] = []
        for index in range(2):
            port = free_port()
            served = Served(cli("serve", "--gateway", gateway_url, "--token-file", str(token_file),
                                "--port", str(port), "--allow-websocket-origin", f"localhost:{nginx_port}"),
                            tmp / f"serve-{index}.log")
            started.append(served)
            instances.append(f"http://127.0.0.1:{port}")
        for served, base in zip(started[1:], instances, strict=True):
            served.wait_status(f"{base}/healthz")
        cert, key = make_certificate(tmp)
        site = prefix / "smithers-dashboard.conf"
        site.write_text(render_site(listen=f"127.0.0.1:{nginx_port}", server_name="localhost", certificate=cert,
                                    certificate_key=key, upstreams=[b.removeprefix("http://") for b in instances]))
        conf = prefix / "nginx.conf"
        conf.write_text(main_conf(prefix, site))
        check = Served([NGINX, "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
                       tmp / "nginx-t.log")
        poll(lambda: not check.alive(), 30, "nginx -t")
        assert check.process.returncode == 0, f"nginx -t refused the rendered template:\n{check.log()}"
        check.stop()
        nginx = Served([NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf),
                        "-g", "daemon off;"], tmp / "nginx.log")
        started.append(nginx)
        base = f"https://localhost:{nginx_port}"
        nginx.wait_status(f"{base}/healthz", verify=False)
        yield NginxProxy(base, nginx_port, instances, gateway_url, nginx, prefix)
    finally:
        for served in reversed(started):
            with contextlib.suppress(Exception):
                served.stop()
        shutil.rmtree(prefix / "tmp", ignore_errors=True)


def fetch_metrics(base: str) -> dict[str, float]:
    """An instance's ``/metrics`` as ``{name: value}`` (unlabelled samples only)."""
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return {s.name: s.value for f in text_string_to_metric_families(response.text) for s in f.samples if not s.labels}
