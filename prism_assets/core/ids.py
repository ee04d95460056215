"""Stable identifiers: prompt ids, logit shards and per-prompt random seeds, all derived by hashing."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

import numpy as np

PROMPT_ID_NAMESPACE = uuid.UUID("6b1f6c1e-8a52-4d0e-9f43-7c2a51d0e0a1")


def prompt_id(source_dataset: str, source_example_id: str) -> str:
    """Deterministic prompt id: the same source row always gets the same id, across runs and machines."""
    return str(uuid.uuid5(PROMPT_ID_NAMESPACE, f"{source_dataset}/{source_example_id}"))


def shard_of(prompt_ids: Sequence[str], shards: int) -> np.ndarray:
    """Shard number of each prompt id: a stable hash, so a prompt never moves between shards."""
    digests = b"".join(hashlib.blake2b(p.encode(), digest_size=8).digest() for p in prompt_ids)
    return (np.frombuffer(digests, dtype="<u8") % np.uint64(shards)).astype(np.int64) if prompt_ids else \
        np.zeros(0, np.int64)


def seed_for(seed: int, keys: Sequence[str]) -> int:
    """A 63-bit seed from the run seed and the keys (prompt ids) it is drawn for."""
    digest = hashlib.sha256((str(seed) + "\x1f" + "\x1f".join(keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF
