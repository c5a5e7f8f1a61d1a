"""Stage 3: any server that speaks the OpenAI API (``vllm serve``, llama.cpp's server, a
hosted API), over HTTP with the standard library.

The preference is read from the log-probabilities the server returns for the next token:
``/v1/completions`` with ``logprobs`` (top-k per position) or ``/v1/chat/completions`` with
``logprobs`` + ``top_logprobs``. Both digits must be in the returned top-k; a digit that is
missing gets the smallest log-prob returned (an upper bound on its true value), and a response
with neither digit is an error that says so. Requests run concurrently (a bounded thread
pool) and are retried with exponential backoff on 429, 5xx, timeouts and refused connections.

``completions`` sends the prompt as given, so with a ``tokenizer`` (catalog name or folder) the
model's chat template formats it exactly as the local backends do; ``chat`` sends the whole
prompt, ending in ``Preferred Summary=``, as one user message (hosted chat models).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lab.backends import BackendError, Generation, Score

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackend:
    """A model behind an OpenAI-compatible HTTP API."""

    def __init__(self, model: str, base_url: str | None, endpoint: str = "completions",
                 tokenizer: str | None = None, chat: str = "auto", concurrency: int = 8,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0,
                 max_retries: int = 5, top_logprobs: int = 20) -> None:
        if not base_url:
            raise BackendError("the openai backend needs --base-url (e.g. "
                               "http://127.0.0.1:8000/v1)")
        if endpoint not in ("completions", "chat"):
            raise BackendError(f"endpoint must be completions or chat, not {endpoint!r}")
        self.model, self.base_url, self.endpoint = model, base_url.rstrip("/"), endpoint
        self.key = os.environ.get(api_key_env)
        self.timeout, self.max_retries, self.top = timeout, max_retries, top_logprobs
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
        self.tokenizer = None
        if tokenizer and endpoint == "completions" and chat != "off":
            from transformers import AutoTokenizer

            from lab.backends.hf import pretrained_folder

            self.tokenizer = AutoTokenizer.from_pretrained(pretrained_folder(tokenizer)[0])
        self.requests = 0  # HTTP requests sent, retries included

    @property
    def identity(self) -> str:
        return f"openai:{self.base_url}:{self.model}"

    def format(self, user: str, assistant: str) -> str:
        if self.tokenizer is not None and getattr(self.tokenizer, "chat_template", None):
            from lab.backends.hf import format_chat

            return format_chat(self.tokenizer, user, assistant)
        return f"{user}\n\n{assistant}"

    def _post(self, path: str, body: dict) -> dict:
        """POST JSON with retries; returns the decoded response."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        url = f"{self.base_url}/{path}"
        for attempt in range(self.max_retries + 1):
            self.requests += 1
            try:
                req = urllib.request.Request(url, data=data, headers=headers)
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as err:
                if err.code not in RETRY_STATUS or attempt == self.max_retries:
                    detail = err.read().decode(errors="replace")[:300]
                    raise BackendError(f"{url}: HTTP {err.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt == self.max_retries:
                    raise BackendError(f"{url}: {getattr(err, 'reason', err)} after "
                                       f"{attempt + 1} attempts; is the server up?") from None
            time.sleep(min(0.5 * 2 ** attempt, 30.0))
        raise AssertionError("unreachable")

    def _body(self, prompt: str, **params) -> tuple[str, dict]:
        if self.endpoint == "completions":
            return "completions", {"model": self.model, "prompt": prompt, **params}
        return "chat/completions", {"model": self.model, **params,
                                    "messages": [{"role": "user", "content": prompt}]}

    def _score_one(self, prompt: str, candidates: list[str]) -> Score:
        if self.endpoint == "completions":
            path, body = self._body(prompt, max_tokens=1, temperature=0.0, logprobs=self.top)
        else:
            path, body = self._body(prompt, max_tokens=1, temperature=0.0, logprobs=True,
                                    top_logprobs=self.top)
        out = self._post(path, body)
        top = _top_logprobs(out, self.endpoint)
        if not any(c in top for c in candidates):
            raise BackendError(
                f"{self.base_url}: the server returned no log-probs for {candidates} among "
                f"its top {len(top)} next tokens ({sorted(top)[:8]}...); check that it "
                "supports logprobs and that the prompt ends right before the answer")
        floor = min(top.values())
        usage = out.get("usage") or {}
        return Score(tuple(top.get(c, floor) for c in candidates),
                     int(usage.get("prompt_tokens", 0)))

    def score(self, prompts: list[str], candidates: list[str]) -> list[Score]:
        return list(self.pool.map(lambda p: self._score_one(p, candidates), prompts))

    def generate(self, prompts: list[str], n: int, max_tokens: int, temperature: float,
                 seed: int) -> list[list[Generation]]:
        sample = temperature > 0
        k = n if sample else 1

        def one(prompt: str) -> list[Generation]:
            path, body = self._body(prompt, n=k, max_tokens=max_tokens,
                                    temperature=temperature if sample else 0.0, seed=seed)
            out = self._post(path, body)
            gens = []
            for choice in out["choices"]:
                text = choice.get("text") if self.endpoint == "completions" else (
                    choice.get("message") or {}).get("content")
                gens.append(Generation(text or "", _tokens(out, len(out["choices"]))))
            return gens if sample else gens * n

        return list(self.pool.map(one, prompts))


def _tokens(out: dict, choices: int) -> int:
    usage = out.get("usage") or {}
    return int(usage.get("completion_tokens", 0)) // max(choices, 1)


def _top_logprobs(out: dict, endpoint: str) -> dict[str, float]:
    """Answer (token stripped of spaces) -> log-prob at the first generated position."""
    try:
        choice = out["choices"][0]
        if endpoint == "completions":
            top = choice["logprobs"]["top_logprobs"][0]
            items = list(top.items())
        else:
            items = [(t["token"], t["logprob"])
                     for t in choice["logprobs"]["content"][0]["top_logprobs"]]
    except (KeyError, IndexError, TypeError):
        raise BackendError("the server's response has no logprobs; it must support "
                           "`logprobs` (completions) or `top_logprobs` (chat)") from None
    result: dict[str, float] = {}
    for token, logprob in items:
        key = token.strip()  # "1" and " 1" are the same answer: their probabilities add
        result[key] = float(np.logaddexp(result[key], logprob)) if key in result else logprob
    return result
