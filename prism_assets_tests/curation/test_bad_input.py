"""Bad input never crashes a source and is never silently dropped: any bytes, any JSON shape through the reader,
the adapters and normalization — every line is a row or a counted blank line, every row lands in the pool or the
quarantine with a reason, and everything stored is valid UTF-8."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prism_assets.curation.ingest.raw import raw_batches
from prism_assets.curation.ingest.readers import ReadStats, SourceUnavailable, read_source
from prism_assets.curation.ingest.registry import RegistryError, load_registry
from prism_assets.curation.normalize.rows import NormalizeConfig, normalize_rows

CONFIG = NormalizeConfig(system_prompt="You are terse.", max_completion_tokens=256, context_limit_tokens=4096)
ODD_TEXT = ["\\ud83d", "\\udc00 tail", "a\\u0000b", "\x00", "\u200b\u200d", "\ufeff", "caf\u00e9", "\r", " ",
            "-", "ok prompt", "\\ud83d\\ude00 pair"]
json_text = st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=20))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), json_text),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.sampled_from(["role", "content", "messages", "q", "id", "from"]),
                                               children, max_size=4)),
    max_leaves=12)


def as_line(value) -> bytes:
    """A JSON line whose strings keep their escapes (so "\\ud83d" reaches the file as an escape)."""
    return json.dumps(value).replace("\\\\u", "\\u").encode()


lines = st.one_of(
    st.binary(max_size=40),
    json_values.map(as_line),
    st.fixed_dictionaries({"id": st.integers(0, 5), "q": json_text}).map(as_line),
    st.fixed_dictionaries({"id": st.text(max_size=3), "messages": st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "bot"]),
                               "content": json_text}), max_size=3)}).map(as_line),
    st.sampled_from([b"", b"   ", b"\r", b"\xef\xbb\xbf{\"q\": \"bom\", \"id\": 1}", b"\"a bare string\"", b"[1, 2]",
                     b"{\"q\": null}", b"\xff\xfe", b"{\"q\": \"x\"", b"{\"q\": \"\\ud83d\", \"id\": 9}\r"]),
)


def registry(folder, adapter: str, options: str) -> object:
    (folder / "registry.yaml").write_text(
        f"sources:\n  - {{name: s, dataset: d, path: rows.jsonl, adapter: {adapter}, options: {options}, "
        "default_skill_bucket: B1, licence: MIT}\n")
    [source] = load_registry(folder / "registry.yaml")
    return source


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.lists(lines, max_size=10).map(lambda ls: b"\n".join(line.replace(b"\n", b" ") for line in ls)),
       adapter=st.sampled_from([("flat", "{prompt_field: q, id_field: id}"), ("messages", "{id_field: id}"),
                                ("conversations", "{}"), ("text", "{}")]))
def test_any_bytes_are_read_adapted_and_normalized_with_every_line_accounted(tmp_path, content, adapter):
    (tmp_path / "rows.jsonl").write_bytes(content)
    source = registry(tmp_path, *adapter)
    stats = ReadStats()
    batches = list(raw_batches(source, stats=stats))  # raw_prompts batches: Arrow requires valid UTF-8
    rows = [row for batch in batches for row in batch.to_pylist()]
    file_lines = content.count(b"\n") + (1 if content and not content.endswith(b"\n") else 0)
    assert len(rows) + stats.blank_lines == file_lines
    indices = [row["row_index"] for row in rows]
    assert indices == sorted(set(indices)) and all(0 <= i < file_lines for i in indices)  # line numbers, no drift
    pool, quarantine = normalize_rows(rows, source, CONFIG)
    assert len(pool) + len(quarantine) == len(rows)
    assert all(q["reason"] and q["reason_code"] for q in quarantine)
    pa.Table.from_pylist(pool + quarantine)  # everything stored encodes as UTF-8
    for record in pool:
        for message in record["messages"]:
            assert "\x00" not in message["content"] and message["content"].strip()


@pytest.mark.parametrize(("line", "code", "words"), [
    (b'{"id": 1, "q": "tell me \\ud83d more"}', "undecodable text", "lone UTF-16 surrogate"),
    (b'{"id": 1, "q": "nul \\u0000 inside"}', "control characters", "U+0000"),
    (b'{"id": 1, "q": "\\u200b\\u200d"}', "empty prompt", "invisible characters"),
    (b'{"id": 1, "q": "-"}', "placeholder prompt", "none of the fields"),
    (b'"Write a function"', "invalid JSON", "adapter: text"),
    (b'{"id": 1, "q": "x"', "invalid JSON", "column"),
])
def test_bad_rows_land_in_quarantine_with_a_reason_to_act_on(tmp_path, line, code, words):
    (tmp_path / "rows.jsonl").write_bytes(b'{"id": 0, "q": "a fine prompt"}\n' + line + b"\n")
    source = registry(tmp_path, "flat", "{prompt_field: q, id_field: id}")
    rows = [row for batch in raw_batches(source) for row in batch.to_pylist()]
    pool, quarantine = normalize_rows(rows, source, CONFIG)
    assert len(pool) == 1 and [q["reason_code"] for q in quarantine] == [code]
    assert words in quarantine[0]["reason"], quarantine[0]["reason"]


def test_blank_lines_bom_and_crlf_keep_row_index_on_the_files_line_numbers(tmp_path):
    (tmp_path / "rows.jsonl").write_bytes(b'\xef\xbb\xbf{"id": 0, "q": "first"}\r\n\r\n\n{"id": 1, "q": "fourth"}\r\n')
    source = registry(tmp_path, "flat", "{prompt_field: q, id_field: id}")
    stats = ReadStats()
    rows = list(read_source(source, stats))
    assert [(r.row_index, r.value["q"], r.read_error) for r in rows] == [(0, "first", None), (3, "fourth", None)]
    assert stats.blank_lines == 2


def test_bare_json_strings_are_prompts_with_the_text_adapter(tmp_path):
    (tmp_path / "rows.jsonl").write_bytes(b'"Write a function that adds two numbers."\n"Name a colour."\n')
    source = registry(tmp_path, "text", "{}")
    rows = [row for batch in raw_batches(source) for row in batch.to_pylist()]
    pool, quarantine = normalize_rows(rows, source, CONFIG)
    assert quarantine == [] and [p["messages"][-1]["content"] for p in pool] == [
        "Write a function that adds two numbers.", "Name a colour."]


def test_a_json_array_file_with_a_lone_surrogate_is_one_quarantined_row_not_a_crash(tmp_path):
    (tmp_path / "rows.json").write_text('[{"id": 1, "q": "fine"}, {"id": 2, "q": "bad \\ud83d"}]')
    (tmp_path / "registry.yaml").write_text(
        "sources:\n  - {name: s, dataset: d, path: rows.json, adapter: flat, options: {prompt_field: q, id_field: id},"
        " default_skill_bucket: B1, licence: MIT}\n")
    [source] = load_registry(tmp_path / "registry.yaml")
    rows = [row for batch in raw_batches(source) for row in batch.to_pylist()]
    assert [r["read_error"] is None for r in rows] == [True, False] and "surrogate" in rows[1]["read_error"]


@pytest.mark.parametrize(("text", "message"), [
    ("sources:\n  - {name: s, dataset: d, path: ../../etc/passwd, adapter: flat, default_skill_bucket: B1, "
     "licence: MIT}\n", "outside the registry's data folder"),
    ("include: [registry.yaml]\n", "includes itself"),
    ("- just\n- a list\n", "YAML mapping"),
    ("sources: [unclosed\n", "registry.yaml: not a valid YAML registry"),
])
def test_registry_mistakes_are_refused_with_the_file_named(tmp_path, text, message):
    (tmp_path / "registry.yaml").write_text(text)
    with pytest.raises(RegistryError, match=message) as err:
        load_registry(tmp_path / "registry.yaml")
    assert "<unicode string>" not in str(err.value)


def test_a_missing_data_file_says_which_source_and_file(tmp_path):
    source = registry(tmp_path, "flat", "{prompt_field: q}")
    with pytest.raises(SourceUnavailable, match=r"source 's': data file .*rows.jsonl does not exist"):
        list(read_source(source))
