"""The transformers backend: any causal LM on CPU or GPU; the default teacher runs here."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from prism_assets.core.ids import seed_for
from prism_assets.teacher.backends.base import (
    DEFAULT_TEACHER_ID,
    ChatTeacher,
    GenerationParams,
    chat_format_of,
    default_teacher_dir,
)


class TransformersTeacher(ChatTeacher):
    """A causal LM through transformers, on CPU or GPU."""

    backend = "transformers"

    def __init__(self, model: str | None = None, revision: str | None = None, device: str | None = None,
                 dtype: str = "float32"):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a bar per load would flood run logs and the demo
        self.teacher_id = model or DEFAULT_TEACHER_ID
        folder = model or default_teacher_dir()
        self.revision = revision or ("gguf-q4_1" if model is None else "main")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(folder, revision=revision)
        self.model = AutoModelForCausalLM.from_pretrained(folder, revision=revision, dtype=getattr(torch, dtype))
        self.model.to(self.device).eval()
        self.chat_format = chat_format_of(model)
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        configured = self.model.generation_config.eos_token_id
        self.eos_ids = self._end_of_turn_ids([configured] if isinstance(configured, int) else configured or [])
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]

    @torch.inference_mode()
    def generate(self, prompts: Sequence[list[int]], keys: Sequence[str], params: GenerationParams) -> list[list[int]]:
        """One response per prompt through `model.generate()` (left-padded batch, KV cache), cut after the first
        end-of-turn token.

        Every prompt samples from its own generator, seeded by the run seed and its key (prompt id), so a
        response does not depend on which prompts share its batch: a resumed shard, or another batch
        size, reproduces it (up to floating-point differences between batch shapes)."""
        n, width = len(prompts), max(len(p) for p in prompts)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        from transformers import GenerationConfig, LogitsProcessorList

        generators = [torch.Generator(device=self.device).manual_seed(seed_for(params.seed, [key])) for key in keys]
        # Sampling happens in the row-seeded processor; generate() then only has to pick its one remaining token.
        config = GenerationConfig(max_new_tokens=params.max_new_tokens, do_sample=False, eos_token_id=self.eos_ids,
                                  pad_token_id=self.pad_id)
        sequences = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                                        generation_config=config,
                                        logits_processor=LogitsProcessorList([RowSeededSampler(params, generators)]))
        responses = []
        for row in sequences[:, width:].tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in self.eos_ids), len(row))
            responses.append(row[:cut])
        return responses

    @torch.inference_mode()
    def response_logits(self, prompts: Sequence[list[int]], responses: Sequence[list[int]]) -> Iterator[torch.Tensor]:
        """Per sequence, the [len(response), vocab] float32 logits that predicted each response token."""
        sequences = [p + r for p, r in zip(prompts, responses)]
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, ids in enumerate(sequences):  # right padding: positions need no shifting
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
        # Only positions from the shortest prompt's last token on predict response tokens: project just those
        # onto the vocabulary, not every prompt position.
        first = min(len(p) for p in prompts) - 1
        logits = self.model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                            logits_to_keep=width - first).logits
        for row, (prompt, response) in enumerate(zip(prompts, responses)):
            start = len(prompt) - 1 - first  # logits at position t predict token t + 1
            yield logits[row, start: start + len(response)].float()


class RowSeededSampler:
    """A logits processor for generate(): the sampling step with one generator per row (temperature, top-p, then
    Gumbel-max with the row's generator). It leaves only the drawn token (every other score is -inf), so greedy
    decoding takes it."""

    def __init__(self, params: GenerationParams, generators: list[torch.Generator]):
        self.params, self.generators = params, generators

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        chosen = self.draw(scores.float())
        return torch.full_like(scores, float("-inf")).scatter_(1, chosen[:, None], 0.0)

    def draw(self, logits: torch.Tensor) -> torch.Tensor:
        """Next token per row: greedy at temperature 0, else top-p filtered Gumbel-max with the row's generator."""
        params = self.params
        if params.temperature <= 0:
            return logits.argmax(dim=-1)
        logits = logits / params.temperature
        if params.top_p < 1:
            ordered, order = logits.sort(dim=-1, descending=True)
            before = torch.softmax(ordered, dim=-1).cumsum(dim=-1) - torch.softmax(ordered, dim=-1)
            drop = torch.zeros_like(logits, dtype=torch.bool).scatter(1, order, before >= params.top_p)
            logits = logits.masked_fill(drop, float("-inf"))  # the top token always stays (nothing before it)
        uniform = torch.stack([torch.rand(logits.shape[-1], generator=g, device=logits.device)
                               for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-20, max=1 - 1e-7)))
        return (logits + gumbel).argmax(dim=-1)
