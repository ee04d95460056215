"""The vLLM backend, run for real on vLLM's CPU build (its own environment, `make vllm-env`, which `make test`
builds), cross-checked against the transformers teacher on the same weights, prompts and responses.

Tolerances: both backends run the same float32 weights, so the stored values may differ only by the order in which
different kernels sum (measured here: logsumexp and generated-token log-prob within 3e-5). 1e-3 is 30x that, for
other CPUs' vector widths, and about two steps of the card's uint16 logits ((max - min) / 65535, 3-6e-4 over a
token's usual 20-40 nat range): a disagreement inside it moves a stored value by at most two steps. Nucleus ids may
differ only where a token sits on the 98% mass boundary.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from prism_assets.teacher.backends import GenerationParams, default_teacher_dir
from prism_assets.teacher.backends.crosscheck import run

REPO = Path(__file__).resolve().parents[2]
VLLM_ENV = REPO / ".venv-vllm"
VLLM_PYTHON = VLLM_ENV / "bin" / "python"
TOLERANCE = 1e-3

pytestmark = pytest.mark.skipif(
    not (VLLM_ENV / ".installed").exists(),
    reason="vLLM's CPU environment is not built (`make vllm-env`; `make test` builds it where the disk allows)")


@pytest.fixture(scope="module")
def crosscheck(teacher, tmp_path_factory):
    """The transformers teacher's responses (sampled) captured by both backends, and each backend's greedy
    responses to the same prompts."""
    texts = ("Name a colour.", "Write one line about the sea.", "What is 12 times 7?")
    prompts = [teacher.prompt_ids([{"role": "user", "content": text}]) for text in texts]
    keys = ["colour", "sea", "sum"]
    responses = teacher.generate(prompts, keys, GenerationParams(max_new_tokens=8, temperature=0.7, seed=1))
    requests = {"prompts": prompts, "responses": responses, "keys": keys,
                "generation": GenerationParams(max_new_tokens=8, temperature=0).to_dict()}
    folder = tmp_path_factory.mktemp("vllm")
    (folder / "requests.json").write_text(json.dumps(requests))
    env = {**os.environ, "PYTHONPATH": str(REPO), "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    done = subprocess.run([str(VLLM_PYTHON), "-m", "prism_assets.teacher.backends.crosscheck",
                           str(folder / "requests.json"), str(folder / "vllm.json"), "--backend", "vllm",
                           "--model", default_teacher_dir(), "--capture-with", "vllm", "transformers"],
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return responses, json.loads((folder / "vllm.json").read_text()), run(requests, teacher)


@pytest.mark.parametrize("path", ["vllm", "transformers"])
def test_vllm_captures_what_the_transformers_teacher_captures(crosscheck, path):
    responses, vllm, reference = crosscheck
    assert vllm["vocab_size"] == reference["vocab_size"]
    for mine, theirs, response in zip(vllm["captures"][path], reference["captures"]["default"], responses,
                                      strict=True):
        assert len(mine["logsumexp"]) == len(response)
        assert np.abs(np.subtract(mine["logsumexp"], theirs["logsumexp"])).max() < TOLERANCE
        assert np.abs(np.subtract(mine["generated_logprob"], theirs["generated_logprob"])).max() < TOLERANCE
        for ids, reference_ids in zip(mine["nucleus_ids"], theirs["nucleus_ids"], strict=True):
            assert ids[0] == reference_ids[0]  # the top token
            overlap = len(set(ids) & set(reference_ids)) / len(set(ids) | set(reference_ids))
            assert overlap >= 0.9


def test_vllm_generates_the_transformers_greedy_responses(crosscheck):
    _, vllm, reference = crosscheck
    assert vllm["eos_ids"] == reference["eos_ids"]
    assert vllm["generated"] == reference["generated"]
