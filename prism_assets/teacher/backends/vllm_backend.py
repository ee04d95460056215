"""The vLLM backend (GPU, optional extra): generation and full-vocabulary capture through vLLM."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from prism_assets.core.ids import seed_for
from prism_assets.teacher.backends.base import ChatTeacher, GenerationParams, chat_format_of


class VLLMTeacher(ChatTeacher):
    """vLLM on GPUs (`pip install prism-assets[vllm]`): generation with `SamplingParams`, full-vocabulary
    capture through `prompt_logprobs` of a second, teacher-forced request with `logprobs_mode="raw_logprobs"`
    (log-softmax of the raw logits, so the logsumexp of what it returns is 0 by construction)."""

    backend = "vllm"

    def __init__(self, model: str, revision: str | None = None, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.9):
        try:
            from vllm import LLM
        except ImportError as err:  # pragma: no cover - exercised only where vllm is installed
            raise RuntimeError("backend 'vllm' needs the optional extra: pip install 'prism-assets[vllm]' "
                               "(and a CUDA GPU); use backend 'transformers' on CPU") from err
        if not torch.cuda.is_available():  # pragma: no cover
            raise RuntimeError("backend 'vllm' needs a CUDA GPU; use backend 'transformers' on CPU")
        self.teacher_id, self.revision = model, revision or "main"
        self.chat_format = chat_format_of(model)
        self.llm = LLM(model=model, revision=revision, max_model_len=max_model_len,
                       gpu_memory_utilization=gpu_memory_utilization, logprobs_mode="raw_logprobs",
                       max_logprobs=-1)
        self.tokenizer = self.llm.get_tokenizer()
        self.vocab_size = len(self.tokenizer)
        self.eos_ids = self._end_of_turn_ids([self.tokenizer.eos_token_id])

    def generate(self, prompts, keys, params: GenerationParams) -> list[list[int]]:  # pragma: no cover
        from vllm import SamplingParams, TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=p) for p in prompts]
        sampling = [SamplingParams(max_tokens=params.max_new_tokens, temperature=params.temperature,
                                   top_p=params.top_p, seed=seed_for(params.seed, [k])) for k in keys]
        return [list(out.outputs[0].token_ids) for out in self.llm.generate(requests, sampling)]

    def response_logits(self, prompts, responses) -> Iterator[torch.Tensor]:  # pragma: no cover
        from vllm import SamplingParams, TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=p + r) for p, r in zip(prompts, responses)]
        forced = SamplingParams(max_tokens=1, prompt_logprobs=-1)
        for out, prompt, response in zip(self.llm.generate(requests, forced), prompts, responses):
            rows = out.prompt_logprobs[len(prompt): len(prompt) + len(response)]
            dense = torch.full((len(rows), self.vocab_size), float("-inf"))
            for t, row in enumerate(rows):
                ids = torch.tensor(list(row.keys()))
                dense[t, ids] = torch.tensor([lp.logprob for lp in row.values()])
            yield dense
