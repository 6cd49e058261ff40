"""Model calls: the OpenAI-compatible client against a local stub server (loopback
only, no outside network), the breaker around it, argument checks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vsm_phoenix.ext.gepa import InvalidArgument, TypeMismatch
from vsm_phoenix.ext.gepa.models import GuardedModel, openai_chat


class _Chat(BaseHTTPRequestHandler):
    """Answers /chat/completions with the prompt reversed (a function of its input)."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions" or body["model"] != "stub":
            self.send_response(404)
            self.end_headers()
            return
        if body["messages"][0]["content"] == "fail":
            self.send_response(503)
            self.end_headers()
            return
        auth = self.headers.get("Authorization", "")
        text = body["messages"][0]["content"][::-1] + ("|key" if auth == "Bearer k" else "")
        reply = json.dumps({"choices": [{"message": {"content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_openai_compatible_client_through_the_breaker(server: str) -> None:
    model = GuardedModel(openai_chat(server, "stub", api_key="k", timeout=5.0))
    assert model("abc") == "cba|key"
    # GEPA's multimodal form (a message list) is reduced to its text.
    assert model([{"role": "user", "content": [{"type": "text", "text": "xy"}]}]) == "yx|key"
    with pytest.raises(OSError):  # HTTP 503: urllib raises HTTPError (an OSError)
        model("fail")
    assert model.calls == 3 and model.breaker.metrics().failures == 1
    model.close()


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgument):
        openai_chat("ftp://example", "m")
    with pytest.raises(TypeMismatch):
        GuardedModel("not callable")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        GuardedModel(openai_chat("http://127.0.0.1:9", "m"), cost_ms=-1)
