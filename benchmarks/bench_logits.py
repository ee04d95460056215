"""Benchmark: the Prism logit layout vs top-K JSONL (bytes/token, KL), and capture overhead.

(1) Real prompts (the embedded samples) through the default teacher (SmolLM2-135M-Instruct, CPU):
    bytes/token of our layout (the HF export's Parquet, zstd) vs the top-K JSONL layout of the blog post
    (K = 20 and 50, raw and gzip), and KL(p‖q) / total variation of what each format reconstructs
    against the teacher's full-vocab distribution.
(2) Capture overhead = capture + pack time / teacher-forced forward time, same run.
(3) `--synthetic-gpu`: a randomly initialised Qwen3-1.7B-shaped model (vocab 151,936) on the GPU:
    forward tokens/s and capture overhead (needs CUDA; run it on a lent GPU machine).

    .venv/bin/python benchmarks/bench_logits.py [--prompts 24] [--new-tokens 64]
    .venv/bin/python benchmarks/bench_logits.py --synthetic-gpu [--sequences 8] [--length 1024]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import platform
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from prism_assets.teacher import backends as teachers
from prism_assets.teacher.logits import capture as logit_capture
from prism_assets.teacher.logits import export as logit_export
from prism_assets.teacher.logits import fidelity


def embedded_prompts(count: int) -> list[list[dict]]:
    """User prompts from every embedded source, round-robin, so skills are mixed."""
    from prism_assets.core.settings import EMBEDDED_DATA

    folder = EMBEDDED_DATA
    fields = {"gsm8k_train_400.jsonl": "question", "math_train_400.jsonl": "problem", "dolly.jsonl": "prompt",
              "ifeval_input_data.jsonl": "prompt", "humaneval.jsonl": "prompt"}
    pools = [[json.loads(line)[field] for line in (folder / name).read_text().splitlines()[:count]]
             for name, field in fields.items()]
    texts = [pools[i % len(pools)][i // len(pools)] for i in range(count)]
    return [[{"role": "user", "content": text[:2000]}] for text in texts]


def topk_jsonl_bytes(response: list[int], logits: torch.Tensor, k: int, token_text) -> bytes:
    logp = torch.log_softmax(logits.float(), -1)
    values, ids = torch.topk(logp, k, -1)
    record = {"response_tokens": len(response), "token_logprobs": [{
        "position": t, "generated_token_id": int(tok), "generated_token": token_text(int(tok)),
        "logprob": float(logp[t, tok]),
        "top_k": [{"token_id": int(i), "token": token_text(int(i)), "logprob": float(v)}
                  for i, v in zip(ids[t].tolist(), values[t].tolist())]} for t, tok in enumerate(response)]}
    return (json.dumps(record) + "\n").encode()


def real_prompts(args) -> None:
    teacher = teachers.load_teacher()
    prompts = [teacher.prompt_ids(m) for m in embedded_prompts(args.prompts)]
    params = teachers.GenerationParams(max_new_tokens=args.new_tokens, batch_size=8)
    config = logit_capture.CaptureConfig()
    text_cache: dict[int, str] = {}

    def token_text(i: int) -> str:
        if i not in text_cache:
            text_cache[i] = teacher.tokenizer.decode([i])
        return text_cache[i]

    rows, jsonl = [], {20: b"", 50: b""}
    metrics: dict[str, list] = {"prism": [], "top20": [], "top50": []}
    forward_s = capture_s = 0.0
    tokens = 0
    generator = torch.Generator().manual_seed(0)
    for start in range(0, len(prompts), params.batch_size):
        batch = prompts[start: start + params.batch_size]
        responses = teacher.generate(batch, [str(start + i) for i in range(len(batch))], params)
        started = time.perf_counter()
        all_logits = list(teacher.response_logits(batch, responses))
        forward_s += time.perf_counter() - started
        for response, logits in zip(responses, all_logits):
            started = time.perf_counter()
            captured = logit_capture.capture(logits, torch.tensor(response), config, generator)
            packed = logit_capture.pack(captured, config.tail_samples)
            capture_s += time.perf_counter() - started
            tokens += len(response)
            generated = torch.tensor(response)
            metrics["prism"].append(fidelity.compare(logits, fidelity.stored_distribution(packed, logits.shape[-1]),
                                                     generated))
            for k in (20, 50):
                jsonl[k] += topk_jsonl_bytes(response, logits, k, token_text)
                metrics[f"top{k}"].append(fidelity.compare(logits, fidelity.topk_distribution(logits, k), generated))
            rows.append({name: (v.tolist() if isinstance(v, np.ndarray) else v) for name, v in packed.items()
                         if name in logit_export.EXPORT_SCHEMA.names})
    layout = [f for f in logit_export.EXPORT_SCHEMA if f.name in rows[0]]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(layout)), buffer, compression="zstd")
    print(f"teacher {teacher.teacher_id}, vocab {teacher.vocab_size:,}; {len(prompts)} prompts, {tokens:,} "
          f"response tokens; {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'format':<28} {'bytes/token':>12} {'KL mean':>10} {'KL p99':>10} {'TV mean':>9} {'gen ≤1e-3':>9}")

    def line(name: str, size: int, results: list) -> None:
        kl = np.concatenate([r["kl"] for r in results])
        tv = np.concatenate([r["tv"] for r in results])
        within = np.concatenate([r["generated_error"] for r in results]) <= 1e-3
        print(f"{name:<28} {size / tokens:>12.1f} {kl.mean():>10.2e} {np.percentile(kl, 99):>10.2e} "
              f"{tv.mean():>9.4f} {within.mean():>9.1%}")

    line("prism (parquet zstd)", len(buffer.getvalue()), metrics["prism"])
    for k in (20, 50):
        line(f"top-{k} JSONL", len(jsonl[k]), metrics[f"top{k}"])
        line(f"top-{k} JSONL gzip", len(gzip.compress(jsonl[k])), metrics[f"top{k}"])
    print(f"capture overhead: capture + pack {capture_s:.3f} s / forward {forward_s:.3f} s = "
          f"{capture_s / forward_s:.2%}")


def synthetic_gpu(args) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    if not torch.cuda.is_available():
        raise SystemExit("--synthetic-gpu needs a CUDA GPU")
    config = AutoConfig.for_model("qwen3", vocab_size=151_936, hidden_size=2048, intermediate_size=6144,
                                  num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                                  max_position_embeddings=40_960, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).cuda().eval()
    ids = torch.randint(0, config.vocab_size, (args.sequences, args.length), device="cuda")
    capture_config = logit_capture.CaptureConfig()
    generator = torch.Generator(device="cuda").manual_seed(0)
    forward_s = capture_s = 0.0
    with torch.inference_mode():
        for repeat in range(args.repeats + 1):
            torch.cuda.synchronize()
            started = time.perf_counter()
            logits = model(input_ids=ids).logits
            torch.cuda.synchronize()
            forward = time.perf_counter() - started
            started = time.perf_counter()
            for row in range(args.sequences):
                captured = logit_capture.capture(logits[row].float(), ids[row], capture_config, generator)
                logit_capture.pack(captured, capture_config.tail_samples)
            torch.cuda.synchronize()
            if repeat:  # the first pass warms up kernels
                forward_s, capture_s = forward_s + forward, capture_s + time.perf_counter() - started
    tokens = args.sequences * args.length * args.repeats
    print(f"{torch.cuda.get_device_name()}: Qwen3-1.7B-shaped (random init, bf16), vocab {config.vocab_size:,}, "
          f"{args.sequences} × {args.length} tokens × {args.repeats} repeats")
    print(f"forward {tokens / forward_s:,.0f} tokens/s; capture + pack {capture_s:.3f} s / forward {forward_s:.3f} s "
          f"= {capture_s / forward_s:.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--synthetic-gpu", action="store_true")
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    synthetic_gpu(args) if args.synthetic_gpu else real_prompts(args)


if __name__ == "__main__":
    main()
