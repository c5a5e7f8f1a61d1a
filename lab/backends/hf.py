"""Stage 3: the Hugging Face transformers backend (CPU by default, the embedded labeler).

Loads a catalog model (assembled GGUF), a ``.gguf`` file, a local folder or a hub id. GGUF
weights are dequantized by transformers (needs ``gguf`` and ``accelerate``); the result is
saved once as safetensors in the cache so later loads take about a second. Scoring reuses the
key/value cache of shared prompt prefixes, runs a pair's post and both orders in one
tree-masked pass, and computes logits at each prompt's last token only.

Scoring precision: the model runs in its dtype (bf16 is 3-4x faster on CPUs with AMX or
AVX512-BF16, and the usual GPU dtype), but by default the final norm and the LM head of the
few scored positions run in fp32 (``score_dtype="fp32"``). A bf16 LM head rounds logits of
magnitude 16-32 to steps of 0.125, so soft labels would take a handful of values and many
pairs would tie at exactly 0.5; the fp32 head keeps them continuous for the cost of a few
vocabulary-sized dot products per pair.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
from pathlib import Path

import torch
import transformers

from lab import models
from lab.backends import BackendError, Generation, Score
from lab.machine import cpu_has_bf16


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto`` means bf16 on a GPU or a bf16-capable CPU, fp32 otherwise."""
    if dtype == "auto":
        return torch.bfloat16 if device != "cpu" or cpu_has_bf16() else torch.float32
    table = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
    if dtype not in table:
        raise BackendError(f"unknown dtype {dtype!r}; choose auto, bf16, fp16 or fp32")
    return table[dtype]


def resolve_model(model: str) -> tuple[str, str | None, str]:
    """Map a model name to (folder or hub id, gguf file name or None, identity)."""
    if model in models.CATALOG:
        path = models.assemble(model)
        return str(path.parent), path.name, f"{model}@{models.weights_hash(path)}"
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise BackendError(f"{path}: no such GGUF file")
        return str(path.parent), path.name, f"{path.name}@{models.weights_hash(path)}"
    if path.is_dir():
        listing = sorted((f.name, f.stat().st_size) for f in path.iterdir() if f.is_file())
        digest = hashlib.sha256(repr(listing).encode()).hexdigest()[:16]
        return str(path), None, f"{path.name}@{digest}"
    if "/" in model and not model.startswith((".", "/")):
        return model, None, model  # a hub id: the revision is the hub's business
    raise BackendError(
        f"model {model!r} is neither a catalog name ({', '.join(models.CATALOG)}), "
        "a .gguf file, a folder nor a hub id; see `rlaif models list`"
    )


def load_causal_lm(model: str, dtype: torch.dtype):
    """Load a causal LM and its tokenizer: (model, tokenizer, identity).

    A GGUF file is dequantized once and saved as safetensors under the cache, so later loads
    take about a second. The A2C policy and causal reward models load through here too.
    """
    source, gguf_file, identity = resolve_model(model)
    if gguf_file is None:
        return (*_from_pretrained(source, None, dtype), identity)
    converted = _converted_path(identity, dtype)
    if (converted / "config.json").is_file():
        return (*_from_pretrained(str(converted), None, dtype), identity)
    lm, tokenizer = _from_pretrained(source, gguf_file, dtype)
    _save_converted(lm, tokenizer, converted)
    return lm, tokenizer, identity


def _converted_path(identity: str, dtype: torch.dtype) -> Path:
    dtype_name = str(dtype).removeprefix("torch.")
    return models.cache_dir() / "converted" / f"{identity.replace('/', '_')}-{dtype_name}"


def pretrained_folder(model: str, dtype: torch.dtype = torch.float32) -> tuple[str, str]:
    """(folder or hub id with safetensors weights, identity), for engines that need one
    (vLLM): a GGUF model is converted once into the cache, as for the transformers backend."""
    source, gguf_file, identity = resolve_model(model)
    if gguf_file is None:
        return source, identity
    converted = _converted_path(identity, dtype)
    if not (converted / "config.json").is_file():
        load_causal_lm(model, dtype)
    return str(converted), identity


def _from_pretrained(source: str, gguf_file: str | None, dtype: torch.dtype):
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
        lm = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except OSError as err:
        raise BackendError(
            f"could not load {source}{'/' + gguf_file if gguf_file else ''}: "
            f"{str(err).splitlines()[0]} (offline? use a catalog name: `rlaif models list`)"
        ) from None
    return lm, tokenizer


def _save_converted(lm, tokenizer, target: Path) -> None:
    """Save dequantized weights as safetensors (temp folder, then rename)."""
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    try:
        lm.hf_quantizer = None
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a cache miss next time, nothing worse


def format_chat(tokenizer, user: str, assistant: str, chat: bool = True) -> str:
    """A user turn and the start of the assistant turn as one prompt string."""
    if not chat:
        return f"{user}\n\n{assistant}"
    head = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    return head + assistant


def _common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest common prefix of token sequences."""
    n = min(len(s) for s in seqs)
    for i in range(n):
        x = seqs[0][i]
        if any(s[i] != x for s in seqs[1:]):
            return i
    return n


class TransformersBackend:
    """A causal LM through transformers; shared prompt prefixes are computed once."""

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        chat: str = "auto",
        device: str = "cpu",
        reuse_prefix: bool = True,
        score_dtype: str = "fp32",
    ) -> None:
        torch.set_flush_denormal(True)  # dequantized weights run 3-10x slower without it
        self.device = device
        self.dtype = resolve_dtype(dtype, device)
        if score_dtype not in ("fp32", "model"):
            raise BackendError(f"score_dtype must be fp32 or model, not {score_dtype!r}")
        self.model, self.tokenizer, self._identity = load_causal_lm(model, self.dtype)
        self.model.to(device).eval()
        # an fp32 model's head is already fp32: the plain path is the same computation
        self._head32 = (_Fp32Head(self.model, model)
                        if score_dtype == "fp32" and self.dtype != torch.float32 else None)
        if chat not in ("auto", "on", "off"):
            raise BackendError(f"chat must be auto, on or off, not {chat!r}")
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if chat == "on" and not has_template:
            raise BackendError(f"{model}: --chat on, but the tokenizer has no chat template")
        self.chat = has_template if chat == "auto" else chat == "on"
        self._token_ids: dict[str, int] = {}
        self.reuse_prefix = reuse_prefix
        self._cache = None  # key/value cache of self._cached_ids (see _last_logits_shared)
        self._cached_ids: list[int] = []
        self.computed_tokens = 0  # tokens run through the model (benchmarks read it)

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def precision(self) -> str:
        """How scores are computed: the model dtype, plus ``+fp32-head`` when upcast.

        Part of the label cache key: labels from a bf16 head and an fp32 head differ.
        """
        name = str(self.dtype)
        return f"{name}+fp32-head" if self._head32 is not None else name

    def format(self, user: str, assistant: str) -> str:
        return format_chat(self.tokenizer, user, assistant, self.chat)

    @property
    def max_context(self) -> int | None:
        """Longest sequence the model takes (its config's ``max_position_embeddings``)."""
        return getattr(self.model.config, "max_position_embeddings", None)

    def count_tokens(self, prompt: str) -> int:
        """Tokens of a prompt as :meth:`score` would read it."""
        return len(self.tokenizer(prompt, add_special_tokens=not self.chat)["input_ids"])

    def _encode(self, prompt: str) -> torch.Tensor:
        ids = self.tokenizer(prompt, add_special_tokens=not self.chat, return_tensors="pt")
        return ids["input_ids"].to(self.device)

    def token_id(self, candidate: str) -> int:
        """The id of a single-token candidate such as '1'."""
        if candidate not in self._token_ids:
            ids = self.tokenizer.encode(candidate, add_special_tokens=False)
            if len(ids) != 1:
                raise BackendError(f"candidate {candidate!r} is {len(ids)} tokens, not one")
            self._token_ids[candidate] = ids[0]
        return self._token_ids[candidate]

    @torch.inference_mode()
    def score(self, prompts: list[str], candidates: list[str]) -> list[Score]:
        ids = [self.token_id(c) for c in candidates]
        toks = [self._encode(p)[0].tolist() for p in prompts]
        if self.reuse_prefix:
            rows = self._last_logits_shared(toks)
        else:
            rows = [self._last_logits_plain(t) for t in toks]
        return [
            Score(tuple(torch.log_softmax(row.float(), dim=-1)[ids].tolist()), len(t))
            for row, t in zip(rows, toks)
        ]

    def _last_logits_plain(self, tokens: list[int]) -> torch.Tensor:
        """One full forward pass; only the last position's logits are computed."""
        input_ids = torch.tensor([tokens], device=self.device)
        self.computed_tokens += len(tokens)
        return self._logits_at(1, input_ids=input_ids)[-1]

    def _last_logits_shared(self, toks: list[list[int]]) -> list[torch.Tensor]:
        """Last-position logits of several prompts in one pass, computing shared prefixes once.

        The key/value cache holds the previous call's shared prefix. It is cut back to what
        the new prompts share with it (the preamble and exemplars, shared by every pair of a
        setting); then one forward pass runs the rest of the new shared prefix (the post,
        shared by both orders and by every rationale of a pair) followed by each prompt's
        suffix, packed in one row: a tree-shaped attention mask lets each suffix see the
        prefix and itself but not the other suffixes, and each suffix's positions start where
        the prefix ends. Logits are computed at each suffix's last token only. Afterwards the
        cache holds the shared prefix, ready for the next call.
        """
        shared = min(_common_prefix(toks), min(len(t) for t in toks) - 1)
        keep = self._reuse(toks[0][:shared])
        stem = toks[0][keep:shared]
        suffixes = [t[shared:] for t in toks]
        new = stem + [i for s in suffixes for i in s]
        owner = torch.tensor([-1] * len(stem) + [k for k, s in enumerate(suffixes) for _ in s])
        within = torch.cat([torch.arange(len(stem))] + [torch.arange(len(s)) for s in suffixes])
        position = keep + torch.where(owner < 0, within, len(stem) + within)
        # query i sees key j (both new) when j is in the stem, or in i's own suffix, up to i
        sees = (owner[None, :] < 0) | (owner[None, :] == owner[:, None])
        sees &= torch.arange(len(new))[None, :] <= torch.arange(len(new))[:, None]
        mask = torch.cat([torch.ones(len(new), keep, dtype=torch.bool), sees], dim=1)
        ends = torch.tensor([len(stem)] + [len(s) for s in suffixes]).cumsum(0)[1:] - 1
        self.computed_tokens += len(new)
        logits = self._logits_at(
            ends.to(self.device),
            input_ids=torch.tensor([new], device=self.device),
            position_ids=position[None].to(self.device),
            attention_mask=self._mask_for_model(mask)[None, None],
            past_key_values=self._cache,
            use_cache=True,
        )
        self._crop_to(shared)
        self._cached_ids = toks[0][:shared]
        return list(logits)

    def _logits_at(self, keep: int | torch.Tensor, **inputs) -> torch.Tensor:
        """Logits at the kept positions (the last ``keep``, or these indices), one row each.

        With the fp32 head, the body runs in the model's dtype and its final hidden states at
        the kept positions go through fp32 copies of the final norm and the LM head.
        """
        if self._head32 is None:
            return self.model(**inputs, logits_to_keep=keep).logits[0]
        hidden = self._head32.body_states(inputs)[0]
        hidden = hidden[-keep:] if isinstance(keep, int) else hidden[keep]
        return self._head32(hidden)

    def _mask_for_model(self, allowed: torch.Tensor) -> torch.Tensor:
        """A boolean attention mask (True = may attend) in the form the attention code takes.

        Additive (0 or the dtype's minimum) for eager attention, boolean for SDPA (the default).
        """
        allowed = allowed.to(self.device)
        if self.model.config._attn_implementation != "eager":
            return allowed
        low = torch.finfo(self.dtype).min
        return torch.zeros(allowed.shape, dtype=self.dtype, device=self.device).masked_fill(
            ~allowed, low)

    def _hold(self, ids: list[int]) -> None:
        """Make the key/value cache hold exactly ``ids``, reusing its common prefix."""
        keep = self._reuse(ids)
        if len(ids) > keep:
            self._extend(ids[keep:])
            self._cached_ids = list(ids)

    def _reuse(self, ids: list[int]) -> int:
        """Cut the key/value cache back to what it shares with ``ids``; returns that length."""
        keep = _common_prefix([self._cached_ids, ids]) if self._cached_ids else 0
        if self._cache is None or keep == 0:
            self._cache, self._cached_ids = transformers.DynamicCache(), []
        elif keep < len(self._cached_ids):
            self._crop_to(keep)
            self._cached_ids = self._cached_ids[:keep]
        return keep

    def _crop_to(self, length: int) -> None:
        """Cut the key/value cache back to its first ``length`` positions."""
        extra = self._cache.get_seq_length() - length
        if extra > 0:
            self._cache.crop(-extra)  # transformers 5: a negative count of tokens to drop

    def _extend(self, new: list[int]) -> torch.Tensor:
        input_ids = torch.tensor([new], device=self.device)
        self.computed_tokens += len(new)
        out = self.model(
            input_ids=input_ids, past_key_values=self._cache, use_cache=True, logits_to_keep=1
        )
        return out.logits

    @torch.inference_mode()
    def generate(
        self, prompts: list[str], n: int, max_tokens: int, temperature: float, seed: int
    ) -> list[list[Generation]]:
        """n continuations of each prompt (1 decoded and repeated when greedy).

        Each prompt is read once: its key/value cache (sharing the preamble and the post with
        the scoring passes) is copied n times and the n samples are decoded as one batch.
        """
        sample = temperature > 0
        k = n if sample else 1
        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        stops = {pad_id, tok.eos_token_id}
        torch.manual_seed(seed)
        out = []
        for prompt in prompts:
            ids = self._encode(prompt)[0].tolist()
            self._hold(ids[:-1])
            cache = copy.deepcopy(self._cache)
            if k > 1:
                cache.batch_repeat_interleave(k)
            input_ids = torch.tensor([ids] * k, device=self.device)
            outputs = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                past_key_values=cache,
                max_new_tokens=max_tokens,
                do_sample=sample,
                temperature=temperature if sample else None,
                top_p=1.0 if sample else None,
                top_k=0 if sample else None,
                pad_token_id=pad_id,
            )
            gens = []
            for row in outputs[:, len(ids):].tolist():
                length = next((i for i, t in enumerate(row) if t in stops), len(row))
                gens.append(Generation(tok.decode(row[:length], skip_special_tokens=True), length))
            out.append(gens if sample else gens * n)
        return out


class _Fp32Head:
    """fp32 copies of a causal LM's final norm and LM head, applied to a few positions.

    The body's output is captured *before* its final norm (a pre-hook on the norm module),
    so the norm, the LM head and any final logit soft-capping all run in fp32 on the rows
    that are scored. The copies cost one fp32 vocabulary matrix of memory (0.9 GB for
    Qwen2.5-1.5B); the compute is a few rows instead of the whole prompt.
    """

    def __init__(self, lm, name: str) -> None:
        self.body = lm.base_model
        norm = getattr(self.body, "norm", None)
        head = lm.get_output_embeddings()
        if norm is None or head is None:
            raise BackendError(
                f"{name}: cannot find the final norm and LM head of {type(lm).__name__} to run "
                "them in fp32; use --score-dtype model (logits in the model dtype) or --dtype fp32"
            )
        self.norm_module = norm
        self.norm = copy.deepcopy(norm).float()
        self.head = copy.deepcopy(head).float()
        self.softcap = getattr(lm.config, "final_logit_softcapping", None)

    def body_states(self, inputs: dict) -> torch.Tensor:
        """Run the body; return the hidden states that enter its final norm."""
        seen: list[torch.Tensor] = []
        hook = self.norm_module.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            self.body(**inputs)
        finally:
            hook.remove()
        if len(seen) != 1:
            raise RuntimeError(f"final norm ran {len(seen)} times in one forward pass, not once")
        return seen[0]

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.norm(hidden.float()))
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits
