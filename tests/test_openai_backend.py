"""The OpenAI-compatible HTTP backend: parsing, retries and errors against a local stub
server (failure injection); tests/test_vllm.py runs it against a real `vllm serve`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lab.backends import BackendError
from lab.backends.openai_http import OpenAIBackend


class Stub(BaseHTTPRequestHandler):
    script: list = []  # (status, body) per request, in order
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Stub.seen.append((self.path, body))
        status, reply = Stub.script.pop(0) if Stub.script else (500, {})
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    Stub.script, Stub.seen = [], []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def completion(top: dict) -> dict:
    return {"choices": [{"text": "1", "logprobs": {"top_logprobs": [top]}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 1}}


def test_completions_logprobs_and_retry(server, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    Stub.script = [(429, {}), (503, {}), (200, completion({"1": -0.5, " 2": -2.0, "2": -1.0,
                                                          "x": -3.0}))]
    b = OpenAIBackend("m", server, concurrency=1)
    [score] = b.score(["prompt"], ["1", "2"])
    assert score.logprobs[0] == -0.5
    assert score.logprobs[1] == pytest.approx(float(__import__("numpy").logaddexp(-2.0, -1.0)))
    assert score.prompt_tokens == 7 and b.requests == 3
    path, body = Stub.seen[-1]
    assert path == "/v1/completions" and body["max_tokens"] == 1 and body["logprobs"] == 20


def test_missing_digit_gets_the_floor_and_none_is_an_error(server):
    Stub.script = [(200, completion({"1": -0.1, "x": -4.0})), (200, completion({"a": -0.1}))]
    b = OpenAIBackend("m", server, concurrency=1)
    assert b.score(["p"], ["1", "2"])[0].logprobs == (-0.1, -4.0)
    with pytest.raises(BackendError, match=r"no log-probs for \['1', '2'\]"):
        b.score(["p"], ["1", "2"])


def test_chat_endpoint_and_client_error(server):
    chat = {"choices": [{"message": {"content": "2"}, "logprobs": {"content": [
        {"token": "2", "logprob": -0.2, "top_logprobs": [{"token": "2", "logprob": -0.2},
                                                          {"token": "1", "logprob": -1.7}]}]}}]}
    Stub.script = [(200, chat), (400, {"error": "bad model"})]
    b = OpenAIBackend("m", server, endpoint="chat", concurrency=1)
    assert b.score(["p"], ["1", "2"])[0].logprobs == (-1.7, -0.2)
    assert Stub.seen[-1][0] == "/v1/chat/completions"
    assert Stub.seen[-1][1]["top_logprobs"] == 20
    with pytest.raises(BackendError, match="HTTP 400"):  # not retried
        b.score(["p"], ["1", "2"])
    assert b.requests == 2


def test_unreachable_server_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    b = OpenAIBackend("m", "http://127.0.0.1:9/v1", max_retries=1, timeout=2)
    with pytest.raises(BackendError, match="after 2 attempts; is the server up"):
        b.score(["p"], ["1", "2"])
