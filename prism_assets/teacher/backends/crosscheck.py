"""Cross-check a teacher backend against another on the same prompts and responses: what the logit card stores
must not depend on the backend that captured it.

    python -m prism_assets.teacher.backends.crosscheck REQUESTS.json OUTPUT.json --backend vllm --model DIR

REQUESTS.json holds `prompts` and `responses` (token ids), `keys` and `generation` (GenerationParams fields).
OUTPUT.json gets, per response, the fields backends must agree on (full-vocab logsumexp, nucleus ids, generated-
token log-probability), the backend's own responses to the prompts, and the seconds each step took. The vLLM
backend runs in its own environment (`make vllm-env`), so this runs as a separate process there.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import torch

from prism_assets.teacher.backends.base import GenerationParams
from prism_assets.teacher.logits.capture import CaptureConfig, capture


def capture_summary(teacher, prompts: Sequence[list[int]], responses: Sequence[list[int]]) -> list[dict]:
    """Per response: logsumexp [T], nucleus ids per token, and the generated token's log-probability [T]."""
    summaries = []
    for response, logits in zip(responses, teacher.response_logits(prompts, responses), strict=True):
        captured = capture(logits, torch.tensor(response, device=logits.device), CaptureConfig(),
                           torch.Generator(device=logits.device).manual_seed(0))
        starts = captured.top_counts.cumsum() - captured.top_counts
        summaries.append({
            "logsumexp": captured.logsumexp.tolist(),
            "nucleus_ids": [captured.top_indices[s:s + n].tolist() for s, n in zip(starts, captured.top_counts)],
            "generated_logprob": captured.generated_logprob.tolist(),
        })
    return summaries


def run(requests: dict, teacher, capture_paths: Sequence[str] = ("default",)) -> dict:
    """The teacher's own responses to the prompts, and the capture of the given responses by each capture path
    (a vLLM teacher's `capture_with` values; "default" for the teacher as it is)."""
    prompts, responses = requests["prompts"], requests["responses"]
    started = time.perf_counter()
    generated = teacher.generate(prompts, requests["keys"], GenerationParams(**requests["generation"]))
    result = {"backend": teacher.backend, "vocab_size": teacher.vocab_size, "eos_ids": list(teacher.eos_ids),
              "generated": generated, "generate_seconds": time.perf_counter() - started,
              "response_tokens": sum(len(r) for r in responses), "captures": {}, "capture_seconds": {}}
    for path in capture_paths:
        if path != "default":
            teacher.capture_with = path
        started = time.perf_counter()
        result["captures"][path] = capture_summary(teacher, prompts, responses)
        result["capture_seconds"][path] = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requests")
    parser.add_argument("output")
    parser.add_argument("--backend", choices=["transformers", "vllm"], required=True)
    parser.add_argument("--model", required=True, help="model folder or id (both backends load the same weights)")
    parser.add_argument("--capture-with", choices=["vllm", "transformers"], nargs="+", default=["vllm"],
                        help="vLLM capture paths to run (transformers loads a second copy of the weights)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--memory-share", type=float, default=0.15,
                        help="vLLM gpu_memory_utilization (on CPU: the share of host memory for the KV cache)")
    args = parser.parse_args(argv)
    with open(args.requests) as handle:
        requests = json.load(handle)
    started = time.perf_counter()
    if args.backend == "vllm":
        from prism_assets.teacher.backends.vllm_backend import VLLMTeacher

        longest = max(len(p) + len(r) for p, r in zip(requests["prompts"], requests["responses"]))
        width = max(longest, max(map(len, requests["prompts"])) + requests["generation"]["max_new_tokens"]) + 1
        first = "transformers" if "transformers" in args.capture_with else "vllm"
        teacher = VLLMTeacher(args.model, max_model_len=width, gpu_memory_utilization=args.memory_share,
                              capture_with=first, dtype=args.dtype)
        paths = args.capture_with
    else:
        from prism_assets.teacher.backends.transformers_backend import TransformersTeacher

        teacher, paths = TransformersTeacher(args.model, dtype=args.dtype), ["default"]
    load_s = time.perf_counter() - started
    result = run(requests, teacher, paths) | {"load_seconds": load_s}
    with open(args.output, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
