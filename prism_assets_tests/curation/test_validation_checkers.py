"""Answer and format checkers of the validation suites, and the reproducible carve-out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prism_assets.core.settings import EMBEDDED_DATA
from prism_assets.curation.validation import checkers
from prism_assets.curation.validation import suites as validation

DATA = EMBEDDED_DATA


def test_gsm8k_checker_reads_the_final_number():
    assert checkers.gsm8k_reference("48/2 = <<48/2=24>>24\n#### 1,072") == "1072"
    assert checkers.check_gsm8k("72", "She sold 48 + 24 = 72 clips.")
    assert checkers.check_gsm8k("72", "The answer:\n#### 72")
    assert checkers.check_gsm8k("1072", "Total is $1,072.")
    assert not checkers.check_gsm8k("72", "She sold 72 clips in April and 24 in May.")  # the last number counts
    assert not checkers.check_gsm8k("72", "I cannot tell.")


def test_math_checker_compares_the_last_boxed_answer():
    assert checkers.last_boxed(r"so $x=\boxed{\frac{1}{2}}$ and \boxed{8+4i}.") == "8+4i"
    assert checkers.check_math_boxed(r"\frac{1}{2}", r"The answer is $\boxed{\dfrac12}$.")
    assert checkers.check_math_boxed("0.5", r"\boxed{\frac{1}{2}}")
    assert checkers.check_math_boxed(r"10", r"\boxed{10 \text{ cm}}")
    assert checkers.check_math_boxed(r"\left( 3, \frac{\pi}{2} \right)", r"\boxed{(3,\frac{\pi}{2})}")
    assert not checkers.check_math_boxed("0", r"\boxed{1}")
    assert not checkers.check_math_boxed("0", "the answer is 0")  # no boxed answer, no credit


@pytest.mark.parametrize("instruction,kwargs,good,bad", [
    ("punctuation:no_comma", {}, "No commas here.", "One, two."),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"},
     "one two three four five", "too short"),
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, "two words", "this has four words"),
    ("keywords:existence", {"keywords": ["delta", "lake"]}, "A Delta lake.", "Only delta."),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "All good.", "That is bad."),
    ("keywords:frequency", {"keyword": "kd", "frequency": 2, "relation": "at least"}, "KD then kd", "kd once"),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "less than"}, "zoo", "zzz"),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "{a: 1}"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two", "* one\n* two\n* three"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*a* and *b*", "*a* only"),
    ("detectable_format:title", {}, "<<My Title>>\ntext", "My Title"),
    ("detectable_format:constrained_response", {}, "My answer is yes.", "Yes."),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\na\nSection 2\nb", "Section 1\nall"),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[name] at [address]", "[name]"),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\nP.S. bye", "Hi."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "one\n***\ntwo", "one\n***\n***\ntwo"),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "First.\n\nThen more.", "First.\n\nAnd more."),
    ("change_case:english_lowercase", {}, "all lower", "Not lower"),
    ("change_case:english_capital", {}, "ALL CAPS", "Not Caps"),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"}, "NASA and ESA",
     "only NASA"),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi"}, "say hi. Hi!", "Hi!"),
    ("combination:two_responses", {}, "first\n******\nsecond", "only one"),
    ("startend:quotation", {}, '"quoted"', "not quoted"),
    ("startend:end_checker", {"end_phrase": "Any questions?"}, "Done. Any questions?", "Any questions? Done."),
])
def test_ifeval_checkers(instruction, kwargs, good, bad):
    instructions = [{"id": instruction, "kwargs": kwargs}]
    assert checkers.check("ifeval", None, json.dumps(instructions), good)
    assert not checkers.check("ifeval", None, json.dumps(instructions), bad)


def test_unsupported_ifeval_instructions_are_left_out():
    assert checkers.ifeval_instructions(["language:response_language"], [{"language": "fr"}]) is None
    assert checkers.ifeval_instructions(["punctuation:no_comma"], [{"unused": None}]) == [
        {"id": "punctuation:no_comma", "kwargs": {}}]


@pytest.mark.parametrize("file,checker,spec,usable", [
    ("gsm8k_train_400.jsonl", "gsm8k", {"field": "answer"}, 400),
    ("math_train_400.jsonl", "math_boxed", {"field": "solution"}, 400),
    ("ifeval_input_data.jsonl", "ifeval", {}, 510),  # 31 rows ask for a response language
])
def test_bundled_references_pass_their_own_checker(file, checker, spec, usable):
    rows = (DATA / file).read_text().splitlines()
    items = validation.referenced_items(rows, checker, spec)
    assert sum(1 for reference, args in items if reference is not None or args is not None) == usable
    assert validation.referenced_items(["not json"], checker, spec) == [(None, None)]


def test_hash_order_is_a_seeded_shuffle_independent_of_input_order():
    ids = [f"id-{i}" for i in range(200)]
    order = [ids[i] for i in validation.hash_order(ids, seed=3)]
    reversed_order = [ids[::-1][i] for i in validation.hash_order(ids[::-1], seed=3)]
    assert order == reversed_order and order != ids
    assert [ids[i] for i in validation.hash_order(ids, seed=4)] != order


def test_stratified_pick_covers_small_cells_without_emptying_them():
    strata = ["big"] * 1000 + ["small"] * 3 + ["single"]
    ids = [f"id-{i}" for i in range(len(strata))]
    picked = validation.stratified_pick(ids, strata, per_stratum=8, max_share=0.1, seed=0)
    counts = {s: sum(1 for i in picked if strata[i] == s) for s in ("big", "small", "single")}
    assert counts == {"big": 8, "small": 1, "single": 0}
    # Adding prompts to another stratum does not change what a stratum holds.
    more = validation.stratified_pick(ids + ["x-1", "x-2"], strata + ["new", "new"], 8, 0.1, 0)
    assert np.array_equal(more[more < len(ids)], picked)
