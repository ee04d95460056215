"""Skill buckets (B1–B5) and context buckets (C1–C4), spec §2–§3.

Skill: a lexical content classifier. Each bucket has weighted regex cues counted over the prompt's
user/developer text with Arrow's vectorized regex kernels; cue evidence is added to the log of a
prior that favours the source's default bucket, and a softmax gives the posterior. The argmax is the
label, its probability the confidence; the prior is recorded beside it, so a math question inside a
chat dataset is labelled B2 while a chat source's ambiguous prompts keep their default.

Context: packed length = prompt tokens + the bucket's expected completion (GPT-OSS analysis + final,
see EXPECTED_COMPLETION_TOKENS), then C1 ≤ 4K < C2 ≤ 8K < C3 ≤ 16K < C4 ≤ 32K. Packing fills short
examples into C1 sequences, which is why C1 starts at 0 rather than 2K.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prism_assets.core.contracts import CTX_BUCKETS, SKILL_BUCKETS
from prism_assets.core.text import content_text

CLASSIFIER_VERSION = "lexical-v1"

# Tokens the teacher is expected to generate per skill bucket (reasoning buckets think longer).
EXPECTED_COMPLETION_TOKENS = {"B1": 1536, "B2": 2048, "B3": 2048, "B4": 768, "B5": 1024}
CTX_UPPER_BOUNDS = (4096, 8192, 16384, 32768)  # inclusive upper bound of C1..C4 in packed tokens

PRIOR_DEFAULT = 0.5  # prior mass on the source's default bucket; the rest is spread evenly

# (bucket, weight, regex). Evidence = weight * log1p(match count); case-insensitive.
CUES: list[tuple[str, float, str]] = [
    ("B2", 2.2, r"\$[^$\n]{1,200}\$|\\frac|\\sqrt|\\boxed|\\begin\{|\\cdot|\\le|\\ge|\\pi|\^\{?\d"),
    ("B2", 1.0, r"\b(solve|equation|integers?|primes?|probability|polynomial|theorem|prove|calculate|compute|"
                r"sum of|how many|how much|percent|remainder|divisible|fraction|ratio|area|perimeter|radius|"
                r"triangle|digits?|average|total|cost|each)\b"),
    ("B2", 0.25, r"\d+(?:\.\d+)?"),
    ("B3", 2.2, r"```|\bdef \w+\(|\bclass \w+|\breturn\b|\bimport \w+|#include|=>|\w+\(\w*\)\s*[{:]|>>>"),
    ("B3", 1.0, r"\b(python|javascript|java|c\+\+|rust|golang|sql|regex|algorithm|complexity|array|"
                r"linked list|binary tree|recursion|debug|compile|function|api|implement|code|program|bug|"
                r"script|input format|output format|test cases?)\b"),
    ("B4", 0.9, r"\b(draft|compose|rewrite|email|letter|poem|story|essay|tweet|blog|respond|reply|tone|"
                r"friendly|polite|formal|casual|persona|pretend|role-?play|act as|advice|help me|can you|"
                r"could you|please|thanks?|feel|my friend|i want|i need|i'm|i am)\b"),
    ("B4", 1.35, r"\b(in (exactly |at least |at most |less than |fewer than |no more than )?\d+ "
                r"(words|sentences|paragraphs|bullet)|bullet points?|markdown|capital letters|lowercase|"
                r"json format|wrap your (entire )?response|do not use|without using|no commas|"
                r"highlight at least|title)\b"),
    ("B5", 1.2, r"\b(what (is|are|was|were)|who (is|was|were)|when (did|was|were)|where (is|was|are)|explain|"
                r"describe|define|definition|history|why (do|does|is|are|did)|meaning of|tell me about|"
                r"capital of|invented|discovered|located|population|species|country|century|famous)\b"),
    ("B1", 1.0, r"\b(plan|planning|compare|contrast|trade-?offs?|pros and cons|should (i|we)|decide|decision|"
                r"strategy|reasoning|consequences?|evaluate|analy[sz]e|prioriti[sz]e|schedule|best way|"
                r"recommend|suggest|which (is|would be) (better|best)|step[- ]by[- ]step|cause|effect|"
                r"if .{1,80} then|riddle|puzzle|logic)\b"),
]
MULTI_TURN_WEIGHT = 1.0  # B4 evidence per extra user turn (multi-turn coherency is assistant policy)


def skill_posterior(texts: pa.Array, default_buckets: list[str], num_user_turns: np.ndarray) -> np.ndarray:
    """Posterior over B1..B5 for each text, shape (n, 5)."""
    n = len(texts)
    evidence = np.zeros((n, len(SKILL_BUCKETS)), dtype=np.float64)
    for bucket, weight, pattern in CUES:
        counts = pc.count_substring_regex(texts, pattern, ignore_case=True).to_numpy(zero_copy_only=False)
        evidence[:, SKILL_BUCKETS.index(bucket)] += weight * np.log1p(counts)
    evidence[:, SKILL_BUCKETS.index("B4")] += MULTI_TURN_WEIGHT * np.maximum(num_user_turns - 1, 0)
    prior = np.full((n, len(SKILL_BUCKETS)), (1 - PRIOR_DEFAULT) / (len(SKILL_BUCKETS) - 1))
    prior[np.arange(n), [SKILL_BUCKETS.index(b) for b in default_buckets]] = PRIOR_DEFAULT
    logits = evidence + np.log(prior)
    logits -= logits.max(axis=1, keepdims=True)
    posterior = np.exp(logits)
    return posterior / posterior.sum(axis=1, keepdims=True)


def ctx_buckets(packed_tokens: np.ndarray) -> np.ndarray:
    """C1..C4 from packed token estimates; callers guarantee packed ≤ 32K (the pool quarantines the rest)."""
    index = np.searchsorted(np.asarray(CTX_UPPER_BOUNDS), packed_tokens, side="left")
    return np.asarray(CTX_BUCKETS)[np.minimum(index, len(CTX_BUCKETS) - 1)]


def label(pool: pa.Table, default_bucket: str) -> pa.Table:
    """bucket_labels rows for pool rows of one source (columns of schemas.BUCKET_LABELS)."""
    n = pool.num_rows
    posterior = skill_posterior(
        content_text(pool.column("messages").combine_chunks()), [default_bucket] * n,
        pool.column("num_user_turns").to_numpy(zero_copy_only=False).astype(np.int64),
    )
    best = posterior.argmax(axis=1)
    skill = np.asarray(SKILL_BUCKETS)[best]
    expected = np.array([EXPECTED_COMPLETION_TOKENS[b] for b in skill], dtype=np.int32)
    prompt_tokens = pool.column("prompt_tokens_est").to_numpy(zero_copy_only=False).astype(np.int32)
    packed = prompt_tokens + expected
    return pa.table({
        "id": pool.column("id"),
        "source_dataset": pool.column("source_dataset"),
        "skill_bucket": pa.array(skill, pa.string()),
        "skill_bucket_prior": pa.array([default_bucket] * n, pa.string()),
        "skill_confidence": pa.array(posterior[np.arange(n), best].astype(np.float32)),
        "skill_scores": pa.array(list(posterior.astype(np.float32)), pa.list_(pa.float32())),
        "prompt_tokens_est": pa.array(prompt_tokens),
        "expected_completion_tokens": pa.array(expected),
        "packed_tokens_est": pa.array(packed.astype(np.int32)),
        "ctx_bucket": pa.array(ctx_buckets(packed), pa.string()),
        "classifier_version": pa.array([CLASSIFIER_VERSION] * n, pa.string()),
    })
