"""Raw rows to canonical PromptSpec records (spec §6.1, §11) or quarantine records.

Every raw row ends in exactly one of the two outputs, so `raw = pool + quarantine` holds by
construction. Rendering and the Harmony round trip dominate the cost, so batches can be spread over
worker processes; duplicate-id detection stays in the caller, in stream order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prism_assets.core import harmony
from prism_assets.core.ids import prompt_id
from prism_assets.core.parallel import ordered_map
from prism_assets.curation.ingest.adapters import Rejected, adapt
from prism_assets.curation.ingest.readers import parse_raw_text
from prism_assets.curation.ingest.registry import Source

CONTEXT_LIMIT_TOKENS = 32_768


@dataclass(frozen=True)
class NormalizeConfig:
    system_prompt: str
    max_completion_tokens: int  # the largest expected completion of any skill bucket
    context_limit_tokens: int = CONTEXT_LIMIT_TOKENS


def normalize_rows(rows: list[dict], source: Source, config: NormalizeConfig) -> tuple[list[dict], list[dict]]:
    """Normalize raw_prompts rows of one source; returns (pool records, quarantine records)."""
    pool, quarantine = [], []
    for row in rows:
        try:
            pool.append(_normalize_row(row, source, config))
        except Rejected as rejection:
            quarantine.append(quarantine_record(row, rejection.code, rejection.reason))
        except Exception as err:  # noqa: BLE001 - one row a case missed must not fail its whole source
            quarantine.append(quarantine_record(
                row, "unexpected error", f"{type(err).__name__}: {err} (row {row['row_index']}); this row's shape "
                "is not handled, please report it with the row's raw_text"))
    return pool, quarantine


def quarantine_record(row: dict, code: str, reason: str) -> dict:
    return {
        "source_dataset": row["source_dataset"], "source_subset": row["source_subset"],
        "source_split": row["source_split"], "row_index": row["row_index"],
        "source_example_id": row["source_example_id"], "reason_code": code, "reason": reason,
        "raw_text": row["raw_text"],
    }


def _normalize_row(row: dict, source: Source, config: NormalizeConfig) -> dict:
    parsed = parse_raw_text(row["raw_text"], row["read_error"])
    if parsed.read_error:
        code = "undecodable text" if parsed.read_error.startswith("undecodable") else "invalid JSON"
        raise Rejected(code, parsed.read_error)
    adapted = adapt(source.adapter, parsed.value, source.options)
    messages = [{"role": "system", "content": config.system_prompt, "channel": None}] + adapted.messages
    # Harmony renders a conversation as the concatenation of its messages, so the run's fixed system
    # message is rendered and round-tripped once per process, not once per row.
    system_tokens, system_round_trips = _rendered_system(config.system_prompt)
    body_tokens = harmony.render_conversation_tokens(adapted.messages)
    conversation_tokens = system_tokens + body_tokens
    prompt_tokens = len(conversation_tokens) + len(_completion_suffix())
    if prompt_tokens + config.max_completion_tokens > config.context_limit_tokens:
        raise Rejected(
            "over context limit",
            f"prompt has {prompt_tokens} tokens; with up to {config.max_completion_tokens} completion tokens "
            f"it exceeds the {config.context_limit_tokens}-token packed limit",
        )
    return {
        "id": prompt_id(row["source_dataset"], row["source_example_id"]),
        "source_dataset": row["source_dataset"], "source_uri": row["source_uri"],
        "source_subset": row["source_subset"], "source_split": row["source_split"],
        "source_example_id": row["source_example_id"], "row_index": row["row_index"],
        "messages": messages,
        "prompt_text": harmony.decode(conversation_tokens) + harmony.decode(_completion_suffix()),
        "prompt_tokens_est": prompt_tokens,
        "num_user_turns": sum(1 for m in messages if m["role"] == "user"),
        "harmony_roundtrip_ok": system_round_trips and harmony.round_trips(adapted.messages, body_tokens),
        "licence": adapted.licence or row["licence"],
    }


@functools.lru_cache(maxsize=8)
def _rendered_system(system_prompt: str) -> tuple[list[int], bool]:
    system = [{"role": "system", "content": system_prompt, "channel": None}]
    tokens = harmony.render_conversation_tokens(system)
    return tokens, harmony.round_trips(system, tokens)


@functools.lru_cache(maxsize=1)
def _completion_suffix() -> tuple[int, ...]:
    """Tokens that open the assistant's turn (`<|start|>assistant`), appended to every prompt."""
    probe = [{"role": "user", "content": "x", "channel": None}]
    full = harmony.render_prompt_tokens(probe)
    return tuple(full[len(harmony.render_conversation_tokens(probe)):])


def split_duplicates(rows: Iterable[dict], seen: set[str]) -> tuple[list[dict], list[dict]]:
    """Separate rows whose example id was already seen in this source (first occurrence wins)."""
    fresh, duplicates = [], []
    for row in rows:
        key = row["source_example_id"]
        if key in seen:
            duplicates.append(quarantine_record(
                row, "duplicate id", f"source_example_id {key!r} already appeared earlier in this source"))
        else:
            seen.add(key)
            fresh.append(row)
    return fresh, duplicates


def normalize_stream(batches: Iterable[list[dict]], source: Source, config: NormalizeConfig,
                     workers: int = 1) -> Iterator[tuple[list[dict], list[dict]]]:
    """Normalize a stream of raw row batches, in order, optionally over worker processes."""
    seen: set[str] = set()
    deduplicated = (split_duplicates(batch, seen) for batch in batches)
    normalize = functools.partial(_normalize_fresh, source=source, config=config)
    for (_, duplicates), (pool, quarantine) in ordered_map(normalize, deduplicated, workers,
                                                           harmony.ensure_offline_vocab):
        yield pool, quarantine + duplicates


def _normalize_fresh(batch: tuple[list[dict], list[dict]], source: Source, config: NormalizeConfig
                     ) -> tuple[list[dict], list[dict]]:
    return normalize_rows(batch[0], source, config)
