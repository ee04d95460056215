"""Teacher logit shards with the real SmolLM2 teacher, through Dagster into Delta, read back."""

from __future__ import annotations

import io
import json
import logging
import shutil
import warnings

import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from prism_assets import cli
from prism_assets.core import ids as prompt_ids
from prism_assets.core.storage import Lakehouse
from prism_assets.distill.loader import ManifestDataset
from prism_assets.distill.runs import stored_bytes_per_token
from prism_assets.teacher import backends as teachers
from prism_assets.teacher.backends.chat_template import load_tokenizer
from prism_assets.teacher.logits import capture as logit_capture
from prism_assets.teacher.logits import reader as logits_reader
from prism_assets.teacher.logits import shards as logit_shards
from prism_assets_tests import card_quickstart
from prism_assets_tests.defs.test_pipeline import query


@pytest.fixture(scope="module")
def default_teacher():
    return teachers.load_teacher()


def test_every_shard_holds_responses_for_manifest_prompts(materialized):
    lakehouse, _ = materialized
    [(rows, shards, foreign)] = query(lakehouse, """
        SELECT count(*), count(DISTINCT shard),
               count(*) FILTER (prompt_id NOT IN (SELECT prompt_id FROM sampling_manifest))
        FROM teacher_logit_shards""")
    assert rows >= 8 and shards == 8 and foreign == 0
    ids = [r for (r,) in query(lakehouse, "SELECT prompt_id FROM teacher_logit_shards")]
    shard_of = dict(query(lakehouse, "SELECT prompt_id, shard FROM teacher_logit_shards"))
    assert [f"{s:03d}" for s in prompt_ids.shard_of(ids, 8)] == [shard_of[i] for i in ids]
    [(teacher, spans, params)] = query(lakehouse, """
        SELECT any_value(teacher_id), bool_and(len(spans) = 1 AND spans[1].channel = 'final'
                                                 AND spans[1].end = num_tokens), any_value(generation_params)
        FROM teacher_logit_shards""")
    assert teacher == teachers.DEFAULT_TEACHER_ID and spans  # ChatML: the whole response is final
    assert json.loads(params)["max_new_tokens"] == 32


def test_reader_api_reconstructs_the_teachers_generated_token_probability(materialized):
    lakehouse, _ = materialized
    ds = logits_reader.load_logit_dataset(lakehouse.root)
    sample = logits_reader.get_sample(ds, index=0)
    assert logits_reader.get_sample(ds, prompt_id=sample["prompt_id"][:8])["prompt_id"] == sample["prompt_id"]
    found = 0
    for t in range(sample["num_tokens"]):
        indices, logits = logits_reader.dequantize_top_logits(sample, t)
        probs = logits_reader.logits_to_probs(logits, sample["logsumexp"][t])
        assert probs.sum() >= 0.98 - 1e-3 or len(indices) == 100
        generated = sample["response_token_ids"][t]
        if generated in indices:
            found += 1
            assert abs(probs[list(indices).index(generated)] - np.exp(sample["generated_logprob"][t])) <= 1e-3
        tail_ids, _ = logits_reader.dequantize_sampled_logits(sample, t)
        assert len(tail_ids) == 24 and not set(tail_ids) & set(indices)
        weights = logits_reader.tail_importance_weights(sample, t)
        assert weights.sum() == pytest.approx(max(0.0, 1 - probs.sum()), abs=2e-3)  # t = 1: (1 − mass) / S each
    assert found >= sample["num_tokens"] // 2


def test_hf_export_loads_with_datasets_and_the_cards_quickstart_runs_unchanged(materialized, capsys):
    from datasets import load_dataset

    lakehouse, _ = materialized
    folder = f"{lakehouse.root}/exports/prism_logits"
    ds = load_dataset(folder, split="train", streaming=True)
    sample = card_quickstart.hydrate_sample(next(iter(ds)))
    tokenizer = load_tokenizer()
    card_quickstart.print_top_logits(sample, token_idx=0, tokenizer=tokenizer)
    card_quickstart.print_sampled_logits(sample, token_idx=0, tokenizer=tokenizer)
    out = capsys.readouterr().out
    assert "=== Nucleus logits for token 0" in out and "Total sampled probability mass" in out
    full = load_dataset(folder, split="train")
    [(rows,)] = query(lakehouse, "SELECT count(*) FROM teacher_logit_shards")
    assert full.num_rows == rows and full.features["top_logits_quantized"].feature.dtype == "uint16"
    card = open(f"{folder}/README.md").read()
    assert teachers.DEFAULT_TEACHER_ID in card and "Token Alignment" in card and "importance" in card


def test_topk_jsonl_export_has_the_blog_layout(materialized):
    lakehouse, _ = materialized
    [(prompt_id, logprobs)] = query(lakehouse, """
        SELECT prompt_id, generated_logprob FROM teacher_logit_shards WHERE shard = '000' ORDER BY prompt_id LIMIT 1""")
    record = json.loads(open(f"{lakehouse.root}/exports/prism_topk/shard-000.jsonl").readline())
    assert record["messages"][-1]["role"] == "assistant" and record["response_tokens"] == len(logprobs)
    first = record["token_logprobs"][0]
    assert set(first) == {"position", "generated_token_id", "generated_token", "logprob", "top_k"}
    assert len(first["top_k"]) == 50 and first["logprob"] == pytest.approx(logprobs[0], abs=1e-6)
    values = [entry["logprob"] for entry in first["top_k"]]
    assert values == sorted(values, reverse=True) and values[0] >= first["logprob"]
    assert prompt_id


def test_fidelity_report_and_cli(materialized, capsys):
    lakehouse, _ = materialized
    [(rows, within, kl, per_token)] = query(lakehouse, """
        SELECT count(*), min(generated_within_1e3), max(kl_mean), min(bytes_per_token) FROM logit_fidelity""")
    # KL depends on the teacher: SmolLM2's flat tails put much mass outside 100 + 24 tokens.
    assert rows >= 8 and within == 1.0 and 0 < kl < 10 and 100 < per_token < 5000
    [(prompt_id,)] = query(lakehouse, "SELECT min(prompt_id) FROM teacher_logit_shards")
    assert cli.main(["--lakehouse", lakehouse.root, "logits", "show", prompt_id[:8], "--token", "1"]) == 0
    out = capsys.readouterr().out
    assert "=== Nucleus logits for token 1" in out and "IS weight" in out and "num_tokens" in out
    assert cli.main(["--lakehouse", lakehouse.root, "logits", "show", "ffffffff"]) == 2


class Interrupted(RuntimeError):
    pass


def test_a_killed_capture_resumes_without_duplicates(materialized, tmp_path, default_teacher):
    source, _ = materialized
    shutil.copytree(source.root, tmp_path / "lakehouse")
    store = Lakehouse(str(tmp_path / "lakehouse"))
    spec = logit_shards.ShardSpec(
        shard="001", shards=8, model=None, backend="transformers", revision=None,
        generation=teachers.GenerationParams(max_new_tokens=6, batch_size=1), capture=logit_capture.CaptureConfig(),
        max_prompts=3)
    calls = {"n": 0}
    original = default_teacher.generate

    def dies_on_the_second_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupted("killed")
        return original(*args, **kwargs)

    default_teacher.generate = dies_on_the_second_batch
    try:
        with pytest.raises(Interrupted):
            logit_shards.build_shard(store, spec, lambda: default_teacher, log=lambda message: None)
    finally:
        default_teacher.generate = original
    committed = source.read_table("teacher_logit_shards", ["prompt_id"], pc.field("shard") == "001").num_rows
    # The crash left the last committed version of the shard.
    assert store.read_table("teacher_logit_shards", ["prompt_id"], pc.field("shard") == "001").num_rows == committed
    stats = logit_shards.build_shard(store, spec, lambda: default_teacher, log=lambda message: None)
    assert stats.resumed == 1 and stats.prompts == 3
    rows = store.read_table("teacher_logit_shards", ["prompt_id", "generation_params"], pc.field("shard") == "001")
    assert rows.num_rows == 3 and len(set(rows.column("prompt_id").to_pylist())) == 3
    assert json.loads(rows.column("generation_params")[0].as_py())["max_new_tokens"] == 6
    assert not (tmp_path / "lakehouse" / "_staging" / "teacher_logit_shards" / "001").exists()
    # ... and stored exactly what an uninterrupted run stores (generation and tail draws are seeded per prompt).
    shutil.copytree(source.root, tmp_path / "uninterrupted")
    clean = Lakehouse(str(tmp_path / "uninterrupted"))
    logit_shards.build_shard(clean, spec, lambda: default_teacher, log=lambda message: None)
    columns = ["prompt_id", "response_token_ids", "top_indices_low", "sampled_indices_low", "sampled_logits_quantized"]
    assert store.read_table("teacher_logit_shards", columns, pc.field("shard") == "001").sort_by("prompt_id").equals(
        clean.read_table("teacher_logit_shards", columns, pc.field("shard") == "001").sort_by("prompt_id"))
    other = store.read_table("teacher_logit_shards", ["prompt_id"], pc.field("shard") == "002").num_rows
    assert other == source.read_table("teacher_logit_shards", ["prompt_id"], pc.field("shard") == "002").num_rows


def test_generation_is_deterministic_per_prompt_whatever_the_batch(default_teacher):
    colour = default_teacher.prompt_ids([{"role": "user", "content": "Name a colour."}])
    sea = default_teacher.prompt_ids([{"role": "user", "content": "Write one line about the sea, please."}])
    params = teachers.GenerationParams(max_new_tokens=8, temperature=1.0, seed=3)
    first = default_teacher.generate([colour, sea], ["a", "b"], params)
    assert first == default_teacher.generate([colour, sea], ["a", "b"], params)
    assert default_teacher.generate([sea], ["b"], params) == first[1:]  # batch-mates do not matter
    assert first != default_teacher.generate([colour, sea], ["a", "b"], teachers.GenerationParams(8, 1.0, 0.95, seed=4))
    greedy = default_teacher.generate([colour], ["a"], teachers.GenerationParams(max_new_tokens=8, temperature=0))
    ids = torch.tensor([colour])
    reference = default_teacher.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                               do_sample=False)[0, len(colour):].tolist()
    assert greedy[0] == reference[: len(greedy[0])]  # the decode loop agrees with transformers' generate
    [logits] = default_teacher.response_logits([colour], first[:1])
    assert logits.shape == (len(first[0]), default_teacher.vocab_size) and torch.isfinite(logits).all()


def test_the_teacher_path_emits_no_deprecation_warning(default_teacher):
    """transformers removes APIs on a schedule (the `past_key_values` argument in 5.40): nothing the teacher calls,
    from loading to capture, may warn, whether through `warnings` or transformers' own logger."""
    logged, handler = io.StringIO(), None
    handler = logging.StreamHandler(logged)
    logging.getLogger("transformers").addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            warnings.simplefilter("error", FutureWarning)
            teacher = teachers.load_teacher()
            prompts = [teacher.prompt_ids([{"role": "user", "content": text}]) for text in ("Hi!", "Name a sea.")]
            for temperature in (1.0, 0.0):
                params = teachers.GenerationParams(max_new_tokens=6, temperature=temperature)
                responses = teacher.generate(prompts, ["a", "b"], params)
            assert all(logits.shape[0] == len(r) for logits, r in zip(teacher.response_logits(prompts, responses),
                                                                      responses, strict=True))
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert "deprecat" not in logged.getvalue().lower(), logged.getvalue()


def test_harmony_and_think_spans():
    from prism_assets.core import harmony

    prefix = len(harmony.encoding().encode("<|start|>assistant", allowed_special="all"))
    tokens = harmony.render_conversation_tokens([
        {"role": "assistant", "channel": "analysis", "content": "Two plus two."},
        {"role": "assistant", "channel": "final", "content": "4"}])[prefix:]
    spans = teachers.response_spans(tokens, "harmony")
    assert [s.channel for s in spans] == ["analysis", "final"] and spans[-1].end == len(tokens)
    assert spans[0].end <= spans[1].start
    think = teachers.response_spans([7, 1, 2, 8, 3, 4], "think", think_open=7, think_close=8)
    assert [(s.channel, s.start, s.end) for s in think] == [("analysis", 0, 4), ("final", 4, 6)]
    assert [(s.channel, s.start, s.end) for s in teachers.response_spans([1, 2], "chatml")] == [("final", 0, 2)]


def test_compact_shards_hold_every_response_in_fewer_bytes_and_the_loader_reads_them(materialized):
    lakehouse, _ = materialized
    [(card_rows, compact_rows, card_tokens, compact_tokens)] = query(lakehouse, """
        SELECT (SELECT count(*) FROM teacher_logit_shards), (SELECT count(*) FROM compact_logit_shards),
               (SELECT sum(num_tokens) FROM teacher_logit_shards),
               (SELECT sum(num_tokens) FROM compact_logit_shards)""")
    assert compact_rows == card_rows and compact_tokens == card_tokens > 0
    assert stored_bytes_per_token(lakehouse, "compact_logit_shards") < 0.5 * stored_bytes_per_token(lakehouse)
    card = list(ManifestDataset(lakehouse, "P1", 0, profile="card"))
    small = list(ManifestDataset(lakehouse, "P1", 0, profile="compact"))
    assert card and [e.prompt_id for e in small] == [e.prompt_id for e in card]
    for a, b in zip(card, small):
        assert np.array_equal(a.response_ids, b.response_ids) and np.array_equal(a.prompt_ids, b.prompt_ids)
        assert torch.equal(a.targets.labels, b.targets.labels)
        # the compact nucleus is a prefix of the card's: the top token and its probability survive
        same_top = (a.targets.nucleus_ids[:, 0] == b.targets.nucleus_ids[:, 0]).float().mean().item()
        gap = (a.targets.nucleus_logprobs[:, 0].exp() - b.targets.nucleus_logprobs[:, 0].exp()).abs().max().item()
        assert same_top >= 0.9 and gap < 5e-3
