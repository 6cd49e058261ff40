"""``BrokerAdmin``: closing a cluster's connections on the broker of a given URL (so
``simulate --close-connections`` honours ``--amqp-url``), without a broker: a fake
management API, and the refusal for a remote broker without one."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from vsm_phoenix.ext.amqp.process import BrokerAdmin

CONNECTIONS = [
    {"name": "127.0.0.1:1 -> 127.0.0.1:5672", "vhost": "shop",
     "client_properties": {"connection_name": "vsm-phoenix c1 n1"}},
    {"name": "127.0.0.1:2 -> 127.0.0.1:5672", "vhost": "shop",
     "client_properties": {"connection_name": "vsm-phoenix c1 ops#ab"}},
    {"name": "127.0.0.1:3 -> 127.0.0.1:5672", "vhost": "shop",
     "client_properties": {"connection_name": "vsm-phoenix c10 n1"}},  # another cluster
    {"name": "127.0.0.1:4 -> 127.0.0.1:5672", "vhost": "/",
     "client_properties": {"connection_name": "vsm-phoenix c1 n2"}},  # another vhost
    {"name": "127.0.0.1:5 -> 127.0.0.1:5672", "vhost": "shop", "client_properties": {}},
]


@pytest.fixture
def management() -> Iterator[tuple[int, list[tuple[str, str, dict[str, str]]]]]:
    seen: list[tuple[str, str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def _auth(self) -> bool:
            expected = "Basic " + base64.b64encode(b"shopper:s3cret").decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return False
            return True

        def do_GET(self) -> None:
            seen.append(("GET", self.path, dict(self.headers)))
            if not self._auth():
                return
            body = json.dumps(CONNECTIONS if self.path == "/api/connections" else {}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_DELETE(self) -> None:
            seen.append(("DELETE", self.path, dict(self.headers)))
            if self._auth():
                self.send_response(204)
                self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_closes_only_the_clusters_connections_in_the_urls_vhost(
    management: tuple[int, list[tuple[str, str, dict[str, str]]]]
) -> None:
    port, seen = management
    admin = BrokerAdmin.for_url("amqp://shopper:s3cret@127.0.0.1:5672/shop",
                                management_port=port)
    assert admin.api == f"http://127.0.0.1:{port}/api" and admin.vhost == "shop"
    assert "s3cret" not in repr(admin)
    assert admin.close_connections("c1", reason="test") == 2
    deleted = [path for method, path, _ in seen if method == "DELETE"]
    assert deleted == ["/api/connections/127.0.0.1%3A1%20-%3E%20127.0.0.1%3A5672",
                       "/api/connections/127.0.0.1%3A2%20-%3E%20127.0.0.1%3A5672"]
    assert all(h.get("X-Reason") == "test" for m, _, h in seen if m == "DELETE")
    assert admin.close_connections(None) == 4  # every connection of the vhost


def test_a_remote_broker_without_management_is_refused_with_the_password_hidden() -> None:
    with pytest.raises(RuntimeError) as exc:
        BrokerAdmin.for_url("amqp://guest:hunter22@broker.invalid:5672/", timeout_s=1.0)
    assert "hunter22" not in str(exc.value) and "rabbitmqctl" in str(exc.value)
