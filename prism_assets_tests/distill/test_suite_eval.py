"""The checkable suites replayed on a model's greedy answers: what counts as passed, and batching that cannot change
an answer."""

import json

import pytest

from prism_assets.distill import suite_eval
from prism_assets.distill.suite_eval import SuiteItem, SuiteScore


def item(suite: str, checker: str, reference: str | None = None, instructions: list[dict] | None = None) -> SuiteItem:
    return SuiteItem("p", suite, [1, 2], checker, reference, json.dumps(instructions) if instructions else None)


def test_a_format_item_passes_only_when_every_instruction_holds_and_each_one_counts_alone():
    no_comma = {"id": "punctuation:no_comma", "kwargs": {}}
    lowercase = {"id": "change_case:english_lowercase", "kwargs": {}}
    items = [item("reasoning", "gsm8k", "72"), item("reasoning", "gsm8k", "72"),
             item("format", "ifeval", instructions=[no_comma, lowercase]),
             item("format", "ifeval", instructions=[no_comma, lowercase]),
             item("format", "ifeval", instructions=[no_comma])]
    responses = ["48 + 24 = 72", "It is 70.", "all lower case here", "Upper, with a comma", ""]
    scores = suite_eval.score(items, responses)
    assert scores["reasoning"] == SuiteScore("reasoning", 2, 1, 2, 1)
    # the third answer follows both, the fourth neither, the empty answer follows nothing (strict IFEval)
    assert scores["format"] == SuiteScore("format", 3, 1, 5, 2)
    assert scores["format"].pass_rate == pytest.approx(1 / 3) and scores["format"].instruction_rate == 0.4
    with pytest.raises(ValueError):
        suite_eval.score(items, responses[:2])  # every item needs its answer


def test_pooled_runs_add_up_per_suite():
    one = {"format": SuiteScore("format", 2, 1, 4, 3)}
    two = {"format": SuiteScore("format", 2, 0, 3, 1), "reasoning": SuiteScore("reasoning", 5, 2, 5, 2)}
    pooled = suite_eval.pool([one, two])
    assert pooled == {"format": SuiteScore("format", 4, 1, 7, 4), "reasoning": SuiteScore("reasoning", 5, 2, 5, 2)}
    assert SuiteScore("format", 0, 0, 0, 0).pass_rate != SuiteScore("format", 0, 0, 0, 0).pass_rate  # nan: no items


def test_greedy_answers_do_not_depend_on_the_batch_they_share(teacher):
    prompts = [teacher.prompt_ids([{"role": "user", "content": text}]) for text in
               ("What is 2 + 3?", "Name a colour.", "Write one sentence about the sea, in lowercase letters only.")]
    alone = [suite_eval.greedy_answers(teacher.model, [p], teacher.eos_ids, teacher.pad_id, 8)[0] for p in prompts]
    together = suite_eval.greedy_answers(teacher.model, prompts, teacher.eos_ids, teacher.pad_id, 8, batch_size=2)
    assert together == alone  # input order kept, left padding changes nothing
    assert all(0 < len(a) <= 8 for a in alone)
    assert not teacher.model.training
