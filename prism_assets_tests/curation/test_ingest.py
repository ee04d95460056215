"""Registry and adapters, on rows shaped like the real datasets (shared/research/hf_sources.md)."""

from __future__ import annotations

import json

import pytest

from prism_assets.core.settings import EMBEDDED_REGISTRY, SEED_HUB_REGISTRY
from prism_assets.curation.ingest.adapters import Rejected, adapt
from prism_assets.curation.ingest.readers import RawRow, _assemble_oasst_trees, read_source
from prism_assets.curation.ingest.registry import RegistryError, load_registry

SEED_DATASETS = {
    "PleIAs/SYNTH", "nvidia/Nemotron-Math-v2", "open-r1/OpenR1-Math-220k", "PrimeIntellect/Hendrycks-Math",
    "qwedsacf/competition_math", "nvidia/OpenCodeReasoning-2", "nvidia/Nemotron-Competitive-Programming-v1",
    "nvidia/OpenCodeInstruct", "agentica-org/DeepCoder-Preview-Dataset", "HuggingFaceH4/ultrachat_200k",
    "nvidia/Nemotron-Post-Training-Dataset-v1", "nvidia/Llama-Nemotron-Post-Training-Dataset",
    "OpenAssistant/oasst1", "Anthropic/hh-rlhf", "hkust-nlp/deita-10k-v0", "NousResearch/hermes-function-calling-v1",
    "nvidia/OpenMathReasoning", "PrimeIntellect/SYNTHETIC-2", "open-thoughts/OpenThoughts-114k",
    "open-thoughts/OpenThoughts3-1.2M",
}


def source(name: str, registry=SEED_HUB_REGISTRY):
    return {s.name: s for s in load_registry(registry)}[name]


def prompt_of(name: str, row: dict) -> list[tuple[str, str]]:
    s = source(name)
    return [(m["role"], m["content"]) for m in adapt(s.adapter, row, s.options).messages]


def test_seed_registry_covers_every_dataset_the_seed_names():
    assert {s.hub_id for s in load_registry(SEED_HUB_REGISTRY)} >= SEED_DATASETS


def test_embedded_registry_has_a_source_for_every_skill_bucket():
    sources = load_registry(EMBEDDED_REGISTRY)
    assert {s.default_skill_bucket for s in sources} == {"B1", "B2", "B3", "B4", "B5"}
    assert all(s.paths and not s.hub_id for s in sources)


def test_flat_prompt_columns_with_nested_ids_and_per_row_licence():
    s = source("hendrycks_math")
    adapted = adapt(s.adapter, {"question": "Find x.", "info": {"problem_id": "p7"}}, s.options)
    assert adapted.messages[-1]["content"] == "Find x." and adapted.example_id == "p7"
    s = source("nemotron_math_v2_high0")
    adapted = adapt(s.adapter, {"problem": "Solve.", "uuid": "u1", "license": "cc-by-sa-4.0"}, s.options)
    assert adapted.licence == "cc-by-sa-4.0"


def test_placeholder_prompts_are_rejected_with_the_rebuild_origin():
    with pytest.raises(Rejected) as info:
        prompt_of("opencodereasoning2_python", {"question": "-", "dataset": "taco", "split": "train", "index": "42"})
    assert info.value.code == "placeholder prompt"
    assert info.value.reason == "the prompt is the placeholder '-': rebuild it from dataset=taco, split=train, index=42"
    with pytest.raises(Rejected, match="rebuild it from dataset=code_contests, split=train, index=3"):
        prompt_of("nemotron_cp_python0", {"messages": [{"role": "user", "content": "-"},
                                                       {"role": "assistant", "content": "x"}],
                                          "dataset": "code_contests", "split": "train", "index": "3"})


def test_messages_keep_history_up_to_the_last_user_turn():
    row = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Joke?"},
                        {"role": "assistant", "content": "No."}]}
    assert prompt_of("nemotron_post_v1_chat", row) == [
        ("developer", "Be brief."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Joke?")]


def test_ultrachat_takes_the_first_user_turn():
    row = {"prompt": "Tell me", "prompt_id": "abc", "messages": [
        {"role": "user", "content": "Tell me"}, {"role": "assistant", "content": "Sure"},
        {"role": "user", "content": "More"}, {"role": "assistant", "content": "Ok"}]}
    assert prompt_of("ultrachat_200k", row) == [("user", "Tell me")]


def test_llama_nemotron_input_list_string_template_and_system_prompt():
    row = {"input": [{"role": "user", "content": "Plan a trip"}], "output": "…",
           "system_prompt": "detailed thinking off"}
    assert prompt_of("llama_nemotron_chat", row) == [("developer", "detailed thinking off"), ("user", "Plan a trip")]
    templated = {"input": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n", "system_prompt": ""}
    assert prompt_of("llama_nemotron_chat", templated) == [("user", "Hello there")]


def test_sharegpt_conversations_and_hermes_system_turn():
    row = {"id": 3, "conversations": [{"from": "system", "value": "<tools>[...]</tools>"},
                                      {"from": "human", "value": "Call it"}, {"from": "gpt", "value": "<tool_call>"}]}
    assert prompt_of("hermes_function_calling", row) == [("developer", "<tools>[...]</tools>"), ("user", "Call it")]
    assert prompt_of(
        "deita_10k", {"id": 1, "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}
    ) == [("user", "Q")]


def test_hh_rlhf_transcript_becomes_turns_before_the_final_response():
    row = {"chosen": "\n\nHuman: What is tea?\n\nAssistant: A drink.\n\nHuman: Hot?\n\nAssistant: Often.",
           "rejected": "\n\nHuman: What is tea?\n\nAssistant: A drink.\n\nHuman: Hot?\n\nAssistant: No."}
    assert prompt_of("hh_rlhf_helpful_base", row) == [
        ("user", "What is tea?"), ("assistant", "A drink."), ("user", "Hot?"),
    ]


def test_synth_adds_the_seed_passage_for_retrieval_exercises():
    row = {"synth_id": "s1", "query": "When was it built?", "exercise": "rag", "query_seed_text": "The bridge…"}
    assert prompt_of("pleias_synth", row) == [("user", "Context: The bridge…\n\nWhen was it built?")]
    assert prompt_of("pleias_synth", {**row, "exercise": "math"}) == [("user", "When was it built?")]


def test_oasst_message_rows_are_assembled_and_follow_the_best_ranked_path():
    rows = [
        {"message_id": "r", "parent_id": None, "message_tree_id": "t", "role": "prompter", "text": "Root?"},
        {"message_id": "a1", "parent_id": "r", "message_tree_id": "t", "role": "assistant", "text": "Worse", "rank": 1},
        {"message_id": "a0", "parent_id": "r", "message_tree_id": "t", "role": "assistant", "text": "Best", "rank": 0},
        {"message_id": "u2", "parent_id": "a0", "message_tree_id": "t", "role": "prompter", "text": "Follow-up?"},
        {"message_id": "a2", "parent_id": "u2", "message_tree_id": "t", "role": "assistant", "text": "Sure", "rank": 0},
        {"message_id": "r2", "parent_id": None, "message_tree_id": "t2", "role": "prompter", "text": "Other"},
    ]
    trees = list(_assemble_oasst_trees(RawRow(i, json.dumps(r), None, r) for i, r in enumerate(rows)))
    assert len(trees) == 2
    assert prompt_of("oasst1_best_path_hub", trees[0].value) == [
        ("user", "Root?"), ("assistant", "Best"), ("user", "Follow-up?"),
    ]
    assert prompt_of("oasst1_best_path_hub", trees[1].value) == [("user", "Other")]


@pytest.mark.parametrize("row, code", [
    ({"problem": "   "}, "empty prompt"),
    ({"problem": None}, "empty prompt"),
    ({"problem": ["an", "image"]}, "non-text content"),
    ([1, 2], "invalid JSON"),
])
def test_bad_rows_are_rejected_with_a_category(row, code):
    s = source("openmathreasoning_cot")
    with pytest.raises(Rejected) as info:
        adapt(s.adapter, row, s.options)
    assert info.value.code == code


def test_invalid_role_order_is_rejected():
    with pytest.raises(Rejected) as info:
        prompt_of("nemotron_post_v1_chat", {"messages": [{"role": "assistant", "content": "Hi"},
                                                         {"role": "user", "content": "?"}]})
    assert info.value.code == "invalid role order"


def test_embedded_sources_read_every_row_with_stable_ids():
    for s in load_registry(EMBEDDED_REGISTRY):
        rows = list(read_source(s))
        assert rows and all(r.read_error is None for r in rows), s.name
        ids = [adapt(s.adapter, r.value, s.options).example_id for r in rows]
        assert ids == [adapt(s.adapter, r.value, s.options).example_id for r in read_source(s)]


def test_dolly_template_is_unwrapped():
    s = source("dolly", EMBEDDED_REGISTRY)
    row = {"prompt": "Below is an instruction.\n\n### Instruction:\nName a fruit.\n\n### Input:\nred\n\n### Response:"}
    assert adapt(s.adapter, row, s.options).messages == [
        {"role": "user", "content": "Name a fruit.\n\nred", "channel": None},
    ]


@pytest.mark.parametrize("entry, message", [
    ("{name: Bad-Name, dataset: d, path: x.jsonl, adapter: flat, default_skill_bucket: B1, licence: MIT}",
     "lowercase"),
    ("{name: a, dataset: d, path: x.jsonl, adapter: nope, default_skill_bucket: B1, licence: MIT}",
     "adapter must be one of"),
    ("{name: a, dataset: d, path: x.jsonl, adapter: flat, default_skill_bucket: B9, licence: MIT}",
     "default_skill_bucket"),
    ("{name: a, dataset: d, adapter: flat, default_skill_bucket: B1, licence: MIT}", "exactly one of hub_id or path"),
    ("{name: a, dataset: d, path: x.csv, adapter: flat, default_skill_bucket: B1, licence: MIT}",
     "format must be one of"),
    ("{name: a, dataset: d, path: x.jsonl, adapter: flat, default_skill_bucket: B1, licence: MIT, colour: red}",
     "unknown keys"),
])
def test_registry_errors_say_what_to_fix(tmp_path, entry, message):
    path = tmp_path / "registry.yaml"
    path.write_text(f"sources:\n  - {entry}\n")
    with pytest.raises(RegistryError, match=message):
        load_registry(path)


def _registry_over(tmp_path, file_name: str, extra: str = "") -> list:
    path = tmp_path / "registry.yaml"
    path.write_text(f"sources:\n  - {{name: s, dataset: d, path: {file_name}, adapter: flat, "
                    f"options: {{prompt_field: q, id_field: key}}, default_skill_bucket: B1, licence: MIT{extra}}}\n")
    return load_registry(path)


def test_parquet_json_and_jsonl_files_stream_the_same_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"key": f"k{i}", "q": f"Question {i}?"} for i in range(7)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    for name in ("rows.parquet", "rows.json", "rows.jsonl"):
        [s] = _registry_over(tmp_path, name)
        read = list(read_source(s))
        assert [r.value for r in read] == rows, name
        assert [r.row_index for r in read] == list(range(7))


def test_row_limit_caps_a_source(tmp_path):
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps({"key": i, "q": "x"}) for i in range(50)))
    [s] = _registry_over(tmp_path, "rows.jsonl", ", limit: 12")
    assert len(list(read_source(s))) == 12


def test_unreadable_lines_are_yielded_with_a_reason_not_dropped(tmp_path):
    (tmp_path / "rows.jsonl").write_bytes(b'{"key": 1, "q": "ok"}\n{"key": 2, "q": "caf\xe9"}\n{"key": 3,\n')
    [s] = _registry_over(tmp_path, "rows.jsonl")
    errors = [r.read_error for r in read_source(s)]
    assert errors[0] is None
    assert errors[1].startswith("undecodable text") and errors[2].startswith("invalid JSON")


def test_registry_include_pulls_in_other_registries(tmp_path):
    (tmp_path / "rows.jsonl").write_text(json.dumps({"key": 1, "q": "x"}) + "\n")
    _registry_over(tmp_path, "rows.jsonl")
    (tmp_path / "outer.yaml").write_text(f"include: [registry.yaml, {EMBEDDED_REGISTRY}]\n")
    names = [s.name for s in load_registry(tmp_path / "outer.yaml")]
    assert names[0] == "s" and "gsm8k" in names


def test_hub_sources_stream_through_hf_datasets(tmp_path, monkeypatch):
    """The hub code path (datasets.load_dataset(..., streaming=True)) on a local dataset folder, offline."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "hub_dataset" / "data"
    folder.mkdir(parents=True)
    rows = [{"problem": f"Compute {i}^2.", "uuid": f"u{i}", "license": "cc-by-4.0"} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), folder / "train-00000-of-00001.parquet")
    (tmp_path / "registry.yaml").write_text(
        f"sources:\n  - {{name: h, dataset: d, hub_id: {folder.parent}, split: train, adapter: flat, "
        "options: {prompt_field: problem, id_field: uuid, licence_field: license}, "
        "default_skill_bucket: B2, licence: x}\n")
    [s] = load_registry(tmp_path / "registry.yaml")
    read = list(read_source(s))
    assert [r.value for r in read] == rows
    assert adapt(s.adapter, read[3].value, s.options).example_id == "u3"
