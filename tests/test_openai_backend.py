"""The OpenAI-compatible HTTP backend against stub servers on 127.0.0.1 (failure injection):
log-prob parsing, a missing candidate or a NaN log-prob as errors, retries (Retry-After,
5xx, 429), a hanging server failing in bounded time, keep-alive and concurrency.
tests/test_vllm.py runs it against a real `vllm serve`."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from lab.backends import BackendError
from lab.backends.openai_http import OpenAIBackend

RELEASE = threading.Event()  # set at teardown: a hanging handler returns


class Stub(BaseHTTPRequestHandler):
    """Answers each POST with the next scripted reply: (status, body, headers, delay).

    A delay of None hangs (never answers) until teardown; an empty script answers 500.
    """

    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per answer
    script: list = []
    seen: list = []  # (path, body, client port, arrival time)
    served: list = []  # the port of the server that took each request
    lock = threading.Lock()
    in_flight = 0
    most_in_flight = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with Stub.lock:
            Stub.seen.append((self.path, body, self.client_address[1], time.monotonic()))
            Stub.served.append(self.server.server_address[1])
            status, reply, headers, delay = (Stub.script.pop(0) if Stub.script
                                             else (500, {}, {}, 0))
            Stub.in_flight += 1
            Stub.most_in_flight = max(Stub.most_in_flight, Stub.in_flight)
        try:
            if delay is None:
                RELEASE.wait(30)
                return
            time.sleep(delay)
            data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        finally:
            with Stub.lock:
                Stub.in_flight -= 1

    def log_message(self, *args):
        pass


def start_stub() -> tuple[str, ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/v1", httpd


def stop_stub(httpd: ThreadingHTTPServer) -> None:
    RELEASE.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server():
    RELEASE.clear()
    Stub.script, Stub.seen, Stub.in_flight, Stub.most_in_flight = [], [], 0, 0
    Stub.served = []
    url, httpd = start_stub()
    yield url
    stop_stub(httpd)


def ok(reply: dict, headers: dict | None = None, delay: float = 0.0) -> tuple:
    return (200, reply, headers or {}, delay)


def completion(top: dict) -> dict:
    return {"id": "c", "object": "text_completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "text": "1", "finish_reason": "length",
                         "logprobs": {"top_logprobs": [top]}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}}


def chat(top: list[tuple[str, float]]) -> dict:
    entries = [{"token": t, "logprob": lp} for t, lp in top]
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": top[0][0]},
                         "logprobs": {"content": [{**entries[0], "top_logprobs": entries}]}}]}


def test_success_merges_spaced_tokens_and_sends_the_request(server):
    Stub.script = [ok(completion({"1": -0.5, " 2": -2.0, "2": -1.0, "x": -3.0}))]
    b = OpenAIBackend("m", server, concurrency=1)
    [score] = b.score(["prompt"], ["1", "2"])
    assert score.logprobs == (-0.5, float(np.logaddexp(-2.0, -1.0)))
    assert score.prompt_tokens == 7 and b.requests == 1
    path, body, _, _ = Stub.seen[-1]
    assert path == "/v1/completions"
    assert body["model"] == "m" and body["prompt"] == "prompt"
    assert body["max_tokens"] == 1 and body["logprobs"] == 20 and body["temperature"] == 0.0


def test_chat_endpoint_and_a_client_error_is_not_retried(server):
    Stub.script = [ok(chat([("2", -0.2), ("1", -1.7)])), (400, {"error": "bad model"}, {}, 0)]
    b = OpenAIBackend("m", server, endpoint="chat", concurrency=1, top_logprobs=2)
    assert b.score(["p"], ["1", "2"])[0].logprobs == (-1.7, -0.2)
    path, body, _, _ = Stub.seen[-1]
    assert path == "/v1/chat/completions" and body["top_logprobs"] == 2
    assert body["messages"] == [{"role": "user", "content": "p"}]
    with pytest.raises(BackendError, match=r"\(model m\): HTTP 400: .*bad model"):
        b.score(["p"], ["1", "2"])
    assert b.requests == 2


def test_top1_only_server_is_an_error_not_p_half(server):
    Stub.script = [ok(completion({"1": -0.1}))]
    b = OpenAIBackend("m", server, concurrency=1)
    with pytest.raises(BackendError) as err:
        b.score(["p"], ["1", "2"])
    assert str(err.value) == (
        f"{server} (model m): no log-prob for ['2'] among the server's top next tokens ('1'); "
        "a label needs both; it returned 1 of the 20 asked for, so it caps them: raise its "
        "limit (vllm serve --max-logprobs), and check that the prompt ends right before the "
        "answer")


def test_digit_outside_a_full_top_k_says_raise_top_logprobs(server):
    Stub.script = [ok(completion({"1": -0.1, "a": -3.0}))]
    b = OpenAIBackend("m", server, concurrency=1, top_logprobs=2)
    with pytest.raises(BackendError, match=r"no log-prob for \['2'\].*raise --top-logprobs "
                                           r"\(now 2\)"):
        b.score(["p"], ["1", "2"])


def test_neither_digit_and_no_logprobs_are_errors(server):
    Stub.script = [ok(completion({"a": -0.1})),
                   ok({**completion({}), "choices": [{"index": 0, "text": "1",
                                                      "finish_reason": "length"}]})]
    b = OpenAIBackend("m", server, concurrency=1)
    with pytest.raises(BackendError, match=r"no log-prob for \['1', '2'\]"):
        b.score(["p"], ["1", "2"])
    with pytest.raises(BackendError, match=r"\(model m\): the response has no log-probs"):
        b.score(["p"], ["1", "2"])


@pytest.mark.parametrize("value", [float("nan"), float("-inf"), float("inf")])
def test_non_finite_logprob_is_an_error(server, value):
    Stub.script = [ok(completion({"1": value, "2": -1.0}))]
    b = OpenAIBackend("m", server, concurrency=1)
    with pytest.raises(BackendError, match=r"non-finite log-probs \{'1': .*\}; not saved"):
        b.score(["p"], ["1", "2"])


def test_500_then_success_backs_off_and_retries(server, monkeypatch):
    waits = []
    monkeypatch.setattr("lab.backends.openai_http._wait", lambda s, abort: waits.append(s))
    Stub.script = [(500, {"error": "oops"}, {}, 0), (503, {}, {}, 0),
                   ok(completion({"1": -0.5, "2": -1.0}))]
    b = OpenAIBackend("m", server, concurrency=1)
    assert b.score(["p"], ["1", "2"])[0].logprobs == (-0.5, -1.0)
    assert b.requests == 3 and waits == [0.5, 1.0]


def test_429_retry_after_is_honoured(server):
    Stub.script = [(429, {"error": "slow down"}, {"Retry-After": "1"}, 0),
                   ok(completion({"1": -0.5, "2": -1.0}))]
    b = OpenAIBackend("m", server, concurrency=1)
    assert b.score(["p"], ["1", "2"])[0].logprobs == (-0.5, -1.0)
    gap = Stub.seen[1][3] - Stub.seen[0][3]
    assert 1.0 <= gap < 1.5 and b.requests == 2


def test_retry_after_ms_and_a_wait_past_the_budget(server, monkeypatch):
    waits = []
    monkeypatch.setattr("lab.backends.openai_http._wait", lambda s, abort: waits.append(s))
    Stub.script = [(429, {}, {"retry-after-ms": "250"}, 0), ok(completion({"1": -1, "2": -1})),
                   (429, {}, {"Retry-After": "3600"}, 0)]
    b = OpenAIBackend("m", server, concurrency=1, retry_budget=60)
    b.score(["p"], ["1", "2"])
    assert waits == [0.25]
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"HTTP 429: .*gave up after 1 attempts"):
        b.score(["p"], ["1", "2"])  # waiting an hour would pass the 60 s budget: fail now
    assert time.monotonic() - start < 1 and waits == [0.25]


def test_hanging_server_fails_within_the_retry_budget(server):
    Stub.script = [ok({}, delay=None)] * 10
    b = OpenAIBackend("m", server, concurrency=1, timeout=0.3, max_retries=10, retry_budget=1.0)
    start = time.monotonic()
    with pytest.raises(BackendError) as err:
        b.score(["p"], ["1", "2"])
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 1.8, elapsed  # the budget, plus slack for a loaded machine
    # attempt 1 times out at 0.3 s, a 0.5 s backoff, attempt 2 has the 0.2 s left
    assert b.requests == 2 and len(Stub.seen) == 2
    assert re.search(r"no answer within 0\.[12]\d? s; gave up after 2 attempts in 1\.\d s ",
                     str(err.value))
    assert "(--timeout 0.3, --max-retries 10, --retry-budget 1)" in str(err.value)


def test_hanging_server_fails_after_max_retries(server):
    Stub.script = [ok({}, delay=None)] * 10
    b = OpenAIBackend("m", server, concurrency=1, timeout=0.3, max_retries=1, retry_budget=100)
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"no answer within 0.3 s; gave up after 2 attempts"):
        b.score(["p"], ["1", "2"])
    elapsed = time.monotonic() - start  # 0.3 + 0.5 backoff + 0.3
    assert 1.05 <= elapsed < 1.9, elapsed


def test_unreachable_server_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("lab.backends.openai_http._wait", lambda s, abort: None)
    b = OpenAIBackend("m", "http://127.0.0.1:9/v1", max_retries=1, timeout=2)
    with pytest.raises(BackendError, match=r"cannot connect .*gave up after 2 attempts .*"
                                           r"is the server up\?$"):
        b.score(["p"], ["1", "2"])


def test_keep_alive_one_connection_for_sequential_requests(server):
    Stub.script = [ok(completion({"1": -0.5, "2": -1.0}))] * 5
    b = OpenAIBackend("m", server, concurrency=1)
    for _ in range(5):
        b.score(["p"], ["1", "2"])
    assert len(Stub.seen) == 5 and len({port for _, _, port, _ in Stub.seen}) == 1


def test_concurrency_requests_in_flight(server):
    Stub.script = [ok(completion({"1": -0.5, "2": -1.0}), delay=0.2)] * 24
    b = OpenAIBackend("m", server, concurrency=8)
    start = time.monotonic()
    assert len(b.score([f"p{i}" for i in range(24)], ["1", "2"])) == 24
    assert Stub.most_in_flight == 8
    assert time.monotonic() - start < 0.6 * 2  # 3 rounds of 0.2 s, not 24


def test_generate_sends_one_seed_per_prompt(server):
    reply = {"id": "c", "object": "text_completion", "created": 0, "model": "m",
             "choices": [{"index": 0, "text": " because", "finish_reason": "length"}],
             "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
    Stub.script = [ok(reply)] * 2
    b = OpenAIBackend("m", server, concurrency=1)
    gens = b.generate(["a", "b"], n=2, max_tokens=4, temperature=0.0, seed=[11, 12])
    assert [[g.text for g in gs] for gs in gens] == [[" because"] * 2] * 2
    assert gens[0][0].tokens == 4
    assert [(body["prompt"], body["seed"], body["n"], body["temperature"])
            for _, body, _, _ in Stub.seen] == [("a", 11, 1, 0.0), ("b", 12, 1, 0.0)]


def test_several_servers_share_the_requests_round_robin(server):
    other, httpd = start_stub()
    try:
        Stub.script = [ok(completion({"1": -0.5, "2": -1.0}))] * 4
        b = OpenAIBackend("m", f"{server}, {other}/", concurrency=1)
        assert b.identity == f"openai:{server},{other}:m"
        assert len(b.score(["a", "b", "c", "d"], ["1", "2"])) == 4
        ports = [int(u.rsplit(":", 1)[1].split("/")[0]) for u in (server, other)]
        assert Stub.served == ports * 2
    finally:
        stop_stub(httpd)


def test_a_dead_server_in_the_list_is_retried_on_the_next(server, monkeypatch):
    waits = []
    monkeypatch.setattr("lab.backends.openai_http._wait", lambda s, abort: waits.append(s))
    Stub.script = [ok(completion({"1": -0.5, "2": -1.0}))] * 4
    b = OpenAIBackend("m", f"{server},http://127.0.0.1:9/v1", concurrency=1)
    scores = b.score(["a", "b", "c", "d"], ["1", "2"])
    assert [s.logprobs for s in scores] == [(-0.5, -1.0)] * 4
    # live, dead -> live, dead -> live, dead -> live: 7 requests, 3 backoffs of 0.5 s
    assert b.requests == 7 and len(Stub.seen) == 4 and waits == [0.5] * 3


def test_first_failure_ends_the_call_and_stops_the_other_requests(server):
    Stub.script = [ok(completion({"1": -0.5, "2": -1.0}))]
    b = OpenAIBackend("m", server, concurrency=4, timeout=1.0, max_retries=5)
    b.score(["warm-up"], ["1", "2"])  # the client's first request is slower
    Stub.script = [(400, {"error": "bad"}, {}, 0)] + [ok({}, delay=None)] * 20
    start = time.monotonic()
    with pytest.raises(BackendError, match="HTTP 400"):
        b.score([f"p{i}" for i in range(8)], ["1", "2"])
    assert time.monotonic() - start < 0.8  # not after the hanging requests time out (1 s)
    time.sleep(1.3)  # the hanging requests (up to 3) time out now and are not retried
    sent = b.requests
    assert 1 + 1 <= sent <= 1 + 4 and len(Stub.seen) == sent  # none sent after the error
    time.sleep(0.6)
    assert b.requests == sent and len(Stub.seen) == sent


@pytest.mark.parametrize("reply, content_type", [
    (b"<html>a proxy's login page</html>", "text/html"), (b"{not json", "application/json")])
def test_an_answer_that_is_not_json_is_an_error(server, reply, content_type):
    Stub.script = [ok(reply, {"Content-Type": content_type})]
    b = OpenAIBackend("m", server, concurrency=1)
    with pytest.raises(BackendError, match=r"\(model m\): the answer is not an OpenAI API "
                                           r"response \(.*\); check that --base-url is the "
                                           r"API's address \(it usually ends in /v1\)$"):
        b.score(["p"], ["1", "2"])


def test_generate_without_completion_text_is_an_error(server):
    Stub.script = [ok({"choices": [{"index": 0, "finish_reason": "length"}]})]
    b = OpenAIBackend("m", server, concurrency=1)
    with pytest.raises(BackendError, match=r"\(model m\): the response has no completion text"):
        b.generate(["a"], n=1, max_tokens=4, temperature=0.0, seed=0)
