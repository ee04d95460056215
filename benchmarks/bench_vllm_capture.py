"""Teacher backends side by side on the same prompts and responses: generation and full-vocabulary capture with
transformers, and with vLLM through each of its capture paths (prompt_logprobs with flat logprobs, or a batched
transformers forward of a second copy on the same device).

    .venv/bin/python benchmarks/bench_vllm_capture.py --prompts 8 --max-new-tokens 32

vLLM runs in its own environment (`make vllm-env`; on a GPU machine point --vllm-python at a CUDA vLLM's
python). Prints tokens/s per step and path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from prism_assets.teacher.backends import GenerationParams, default_teacher_dir, load_teacher
from prism_assets.teacher.backends.crosscheck import run

REPO = Path(__file__).resolve().parents[1]
TOPICS = ["the sea", "a colour", "prime numbers", "a short poem", "sorting a list in Python", "the moon",
          "photosynthesis", "a haiku about rain", "binary search", "the French revolution", "gravity", "tea"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--vllm-python", default=str(REPO / ".venv-vllm" / "bin" / "python"))
    args = parser.parse_args()

    teacher = load_teacher()
    prompts = [teacher.prompt_ids([{"role": "user", "content": f"Write about {TOPICS[i % len(TOPICS)]} ({i})."}])
               for i in range(args.prompts)]
    keys = [f"p{i}" for i in range(args.prompts)]
    params = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=0.7, seed=0)
    responses = teacher.generate(prompts, keys, params)
    requests = {"prompts": prompts, "responses": responses, "keys": keys, "generation": params.to_dict()}
    reference = run(requests, teacher)
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "requests.json").write_text(json.dumps(requests))
        started = time.perf_counter()
        subprocess.run([args.vllm_python, "-m", "prism_assets.teacher.backends.crosscheck",
                        f"{folder}/requests.json", f"{folder}/vllm.json", "--backend", "vllm", "--model",
                        default_teacher_dir(), "--capture-with", "vllm", "transformers"], check=True,
                       env={**os.environ, "PYTHONPATH": str(REPO), "VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        total = time.perf_counter() - started
        vllm = json.loads(Path(folder, "vllm.json").read_text())
    tokens = reference["response_tokens"]
    generated = sum(map(len, reference["generated"])), sum(map(len, vllm["generated"]))
    print(f"prompts={args.prompts} response_tokens={tokens} vocab={reference['vocab_size']}")
    print(f"transformers: generate {generated[0] / reference['generate_seconds']:.1f} tokens/s, "
          f"capture {tokens / reference['capture_seconds']['default']:.1f} tokens/s")
    print(f"vllm: load {vllm['load_seconds']:.1f} s (process {total:.1f} s), "
          f"generate {generated[1] / vllm['generate_seconds']:.1f} tokens/s")
    for path, seconds in vllm["capture_seconds"].items():
        print(f"vllm capture_with={path}: {tokens / seconds:.1f} tokens/s")


if __name__ == "__main__":
    main()
