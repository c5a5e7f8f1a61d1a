"""Stage 3: any server that speaks the OpenAI API (``vllm serve``, llama.cpp's server, a
hosted API), through the ``openai`` client.

The preference is read from the log-probabilities the server returns for the next token:
``/v1/completions`` with ``logprobs`` (top-k per position) or ``/v1/chat/completions`` with
``logprobs`` + ``top_logprobs``. Both digits must be in the returned top-k: a digit that is
missing, or a log-prob that is NaN or infinite, is a :class:`BackendError` naming the server,
the model and the fix; it is never turned into a label.

One ``openai.OpenAI`` client (one pool of keep-alive connections) per server serves a thread
pool that keeps ``concurrency`` requests in flight; the labeler hands it a whole chunk of pairs
at a time. Several servers of one model (``base_url`` a comma-separated list) take requests
round-robin. The client's own retries are off: each request is retried here, on the next
server, after a timeout, a refused connection, 408, 409, 429 or 5xx, waiting as the server's
``Retry-After`` (or ``retry-after-ms``) says or with exponential backoff, at most
``max_retries`` times and never past ``retry_budget`` seconds from the first attempt, so a
hanging server gives an error in bounded time.

``completions`` sends the prompt as given, so with a ``tokenizer`` (catalog name or folder) the
model's chat template formats it exactly as the local backends do; ``chat`` sends the whole
prompt, ending in ``Preferred Summary=``, as one user message (hosted chat models).
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import itertools
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai

from lab.backends import BackendError, Generation, Score

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackend:
    """A model behind an OpenAI-compatible HTTP API."""

    per_prompt_seeds = True
    """``generate`` takes one seed per prompt (each prompt is its own request)."""

    def __init__(self, model: str, base_url: str | None, endpoint: str = "completions",
                 tokenizer: str | None = None, chat: str = "auto", concurrency: int = 8,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_retries: int = 3, retry_budget: float = 300.0,
                 top_logprobs: int = 20) -> None:
        """Connect (lazily: nothing is sent until the first request).

        Args:
            model: the model name the server knows.
            base_url: the server, e.g. ``http://127.0.0.1:8000/v1``, or several separated
                by commas (servers of one model: requests go round-robin, and a retry goes
                to the next server).
            endpoint: ``completions`` or ``chat``.
            tokenizer: catalog name or folder whose chat template formats completions prompts.
            chat: ``off`` sends completions prompts without a chat template.
            concurrency: requests in flight at once.
            api_key_env: environment variable holding the API key (local servers need none).
            timeout: seconds one request may go without an answer.
            max_retries: retries of one request after a retryable failure.
            retry_budget: seconds one request may take in all, retries and waits included.
            top_logprobs: next tokens whose log-probs are asked for.
        """
        if not base_url:
            raise BackendError("the openai backend needs --base-url (e.g. "
                               "http://127.0.0.1:8000/v1)")
        if endpoint not in ("completions", "chat"):
            raise BackendError(f"endpoint must be completions or chat, not {endpoint!r}")
        if not timeout > 0 or not retry_budget > 0 or max_retries < 0 or top_logprobs < 1:
            raise BackendError(
                f"openai backend: timeout ({timeout}) and retry_budget ({retry_budget}) must "
                f"be > 0, max_retries ({max_retries}) >= 0 and top_logprobs ({top_logprobs}) "
                ">= 1")
        self.urls = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
        self.model, self.base_url, self.endpoint = model, ",".join(self.urls), endpoint
        self.timeout, self.max_retries, self.budget = timeout, max_retries, retry_budget
        self.top = top_logprobs
        # local servers take any key; the client insists on one
        key = os.environ.get(api_key_env) or "none"
        self.clients = [openai.OpenAI(api_key=key, base_url=url, timeout=timeout, max_retries=0)
                        for url in self.urls]
        self._turn = itertools.count()
        self._turn_lock = threading.Lock()
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

    def _where(self, url: str) -> str:
        return f"{url} (model {self.model})"

    def _next(self) -> tuple[openai.OpenAI, str]:
        """The client (and its URL) the next request goes to: round-robin over the servers."""
        with self._turn_lock:
            i = next(self._turn) % len(self.clients)
            self.requests += 1
        return self.clients[i], self.urls[i]

    def _request(self, prompt: str, abort: threading.Event, **params) -> tuple[dict, str]:
        """One completion with retries inside the budget: (the response as a dict, its URL).

        Stops before its next attempt (or during a wait) once ``abort`` is set: another
        request of the same call has failed, and the call is failing anyway.
        """
        if self.endpoint == "completions":
            body = {"prompt": prompt}
        else:
            body = {"messages": [{"role": "user", "content": prompt}]}
        start = time.monotonic()
        deadline = start + self.budget
        for attempt in range(self.max_retries + 1):
            if abort.is_set():
                raise BackendError("cancelled: another request of this call failed")
            client, url = self._next()
            create = (client.completions.create if self.endpoint == "completions"
                      else client.chat.completions.create)
            left = deadline - time.monotonic()
            try:
                out = create(model=self.model, **body, **params,
                             timeout=max(min(self.timeout, left), 0.01))
                if not hasattr(out, "model_dump"):  # a body that is not JSON, returned as text
                    raise ValueError(repr(out)[:120])
                return out.model_dump(warnings=False), url
            except ValueError as err:  # not JSON, or JSON that cannot be parsed
                raise BackendError(
                    f"{self._where(url)}: the answer is not an OpenAI API response ({err}); "
                    "check that --base-url is the API's address (it usually ends in /v1)"
                ) from None
            except openai.APIStatusError as err:
                failure = f"HTTP {err.status_code}: {_detail(err)}"
                if err.status_code not in RETRY_STATUS:
                    raise BackendError(f"{self._where(url)}: {failure}") from None
                wait = _retry_after(err.response.headers)
            except openai.APITimeoutError:
                failure, wait = f"no answer within {round(min(self.timeout, left), 2):g} s", None
            except openai.APIConnectionError as err:
                cause = err.__cause__ or err
                failure, wait = f"cannot connect ({cause})", None
            wait = min(0.5 * 2 ** attempt, 8.0) if wait is None else wait
            spent = time.monotonic() - start
            if attempt == self.max_retries or time.monotonic() + wait >= deadline:
                raise BackendError(
                    f"{self._where(url)}: {failure}; gave up after {attempt + 1} attempts in "
                    f"{spent:.1f} s (--timeout {self.timeout:g}, --max-retries "
                    f"{self.max_retries}, --retry-budget {self.budget:g}); is the server up?"
                ) from None
            _wait(wait, abort)
        raise AssertionError("unreachable")

    def _all(self, fn, *args: list) -> list:
        """``fn`` over the arguments on the request threads, results in order.

        The first failure is raised as soon as it happens: the requests not yet started are
        cancelled and the running ones stop retrying, so a failing call ends within one
        ``timeout`` of its first error (and a Ctrl-C does not wait for the whole chunk).
        """
        abort = threading.Event()

        def run(*a):
            try:
                return fn(*a, abort)
            except BaseException:
                abort.set()  # before this thread takes the next request
                raise

        futures = [self.pool.submit(run, *a) for a in zip(*args)]
        try:
            done, _ = concurrent.futures.wait(futures, return_when="FIRST_EXCEPTION")
            failed = [f for f in futures if f in done and f.exception() is not None]
            if failed:
                raise failed[0].exception()
            return [f.result() for f in futures]
        finally:
            abort.set()
            for future in futures:
                future.cancel()

    def _score_one(self, prompt: str, candidates: list[str], abort: threading.Event) -> Score:
        if self.endpoint == "completions":
            out, url = self._request(prompt, abort, max_tokens=1, temperature=0.0,
                                     logprobs=self.top)
        else:
            out, url = self._request(prompt, abort, max_tokens=1, temperature=0.0,
                                     logprobs=True, top_logprobs=self.top)
        top = _top_logprobs(out, self.endpoint, self._where(url))
        missing = [c for c in candidates if c not in top]
        if missing:
            shown = ", ".join(repr(t) for t in sorted(top, key=top.get, reverse=True)[:5])
            fix = (f"it returned {len(top)} of the {self.top} asked for, so it caps them: "
                   "raise its limit (vllm serve --max-logprobs)" if len(top) < self.top else
                   f"raise --top-logprobs (now {self.top})")
            raise BackendError(
                f"{self._where(url)}: no log-prob for {missing} among the server's top next "
                f"tokens ({shown}); a label needs both; {fix}, and check that the prompt ends "
                "right before the answer")
        bad = {c: top[c] for c in candidates if not math.isfinite(top[c])}
        if bad:
            raise BackendError(f"{self._where(url)}: the server returned non-finite log-probs "
                               f"{bad}; not saved as a label; check the server and model")
        usage = out.get("usage") or {}
        return Score(tuple(top[c] for c in candidates), int(usage.get("prompt_tokens") or 0))

    def score(self, prompts: list[str], candidates: list[str]) -> list[Score]:
        return self._all(self._score_one, prompts, [candidates] * len(prompts))

    def generate(self, prompts: list[str], n: int, max_tokens: int, temperature: float,
                 seed: int | list[int]) -> list[list[Generation]]:
        sample = temperature > 0
        k = n if sample else 1
        seeds = seed if isinstance(seed, list) else [seed] * len(prompts)

        def one(prompt: str, seed: int, abort: threading.Event) -> list[Generation]:
            out, url = self._request(prompt, abort, n=k, max_tokens=max_tokens,
                                     temperature=temperature if sample else 0.0, seed=seed)
            try:
                texts = [choice["text"] if self.endpoint == "completions"
                         else choice["message"]["content"] for choice in out["choices"]]
            except (KeyError, TypeError):
                texts = [None]
            if not texts or any(not isinstance(text, str) for text in texts):
                raise BackendError(f"{self._where(url)}: the response has no completion text "
                                   f"(choices: {str(out.get('choices'))[:120]})")
            gens = [Generation(text, _tokens(out, len(texts))) for text in texts]
            return gens if sample else gens * n

        return self._all(one, prompts, seeds)

    def close(self) -> None:
        """Close the connections and the request threads."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        for client in self.clients:
            client.close()


def _wait(seconds: float, abort: threading.Event) -> None:
    """Wait between attempts, or less once ``abort`` is set (one place, so tests can record
    the waits)."""
    abort.wait(seconds)


def _detail(err: openai.APIStatusError) -> str:
    try:
        return err.response.text[:300]
    except Exception:  # a streamed or closed body: the client's message says enough
        return str(err)[:300]


def _retry_after(headers) -> float | None:
    """Seconds the server asks to wait (``retry-after-ms``, or ``Retry-After`` as seconds
    or an HTTP date), or None."""
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None  # an unreadable header: back off as usual


def _tokens(out: dict, choices: int) -> int:
    usage = out.get("usage") or {}
    return int(usage.get("completion_tokens") or 0) // max(choices, 1)


def _top_logprobs(out: dict, endpoint: str, where: str = "the server") -> dict[str, float]:
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
        raise BackendError(f"{where}: the response has no log-probs; the server must support "
                           "`logprobs` (completions) or `top_logprobs` (chat)") from None
    result: dict[str, float] = {}
    for token, logprob in items:
        key = token.strip()  # "1" and " 1" are the same answer: their probabilities add
        logprob = float(logprob)
        result[key] = float(np.logaddexp(result[key], logprob)) if key in result else logprob
    return result
