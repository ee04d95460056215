"""The checkable validation suites (spec §13.4: `reasoning`, `format`) replayed on a model's greedy answers.

KL on the held-out slice says how close a student's distribution is to the teacher's; these say whether that shows
in what it writes: a reasoning item passes when its checker (GSM8K final number, MATH's last `\\boxed{}`) finds the
reference answer, a format item when every one of its IFEval instructions holds (prompt-level, strict). For format
items the share of single instructions followed (instruction-level, IFEval's second figure) is also reported: it
moves before whole prompts do. Greedy decoding, so a figure depends on the model alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prism_assets.curation.validation import checkers


@dataclass(frozen=True)
class SuiteItem:
    prompt_id: str
    suite: str  # "reasoning" | "format"
    prompt_ids: list[int]  # the prompt rendered by the teacher's chat template, generation prompt included
    checker: str
    reference_answer: str | None
    checker_args: str | None


@dataclass(frozen=True)
class SuiteScore:
    suite: str
    items: int
    passed: int  # prompt-level: the checker accepts the whole answer
    instructions: int  # format: instructions over all items (reasoning: one per item)
    instructions_followed: int

    @property
    def pass_rate(self) -> float:
        return self.passed / self.items if self.items else float("nan")

    @property
    def instruction_rate(self) -> float:
        return self.instructions_followed / self.instructions if self.instructions else float("nan")


@torch.inference_mode()
def greedy_answers(model, prompts: Sequence[list[int]], eos_ids: Sequence[int], pad_id: int, max_new_tokens: int,
                   batch_size: int = 16) -> list[list[int]]:
    """Each prompt's greedy continuation, cut after its first end-of-turn token. Prompts are batched by length
    (left-padded, KV cache) so short prompts do not wait on padding; answers come back in input order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for row, i in enumerate(rows):
            input_ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
            attention[row, width - len(prompts[i]):] = 1
        sequences = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                   max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=list(eos_ids),
                                   pad_token_id=pad_id)
        for row, i in enumerate(rows):
            tokens = sequences[row, width:].tolist()
            answers[i] = tokens[:next((k + 1 for k, t in enumerate(tokens) if t in eos_ids), len(tokens))]
    model.train(was_training)
    return answers


def instructions_followed(item: SuiteItem, response: str) -> tuple[int, int]:
    """(instructions, followed) of one item: an IFEval item's single instructions, else the item as one."""
    if item.checker != "ifeval":
        return 1, int(checkers.check(item.checker, item.reference_answer, item.checker_args, response))
    instructions = json.loads(item.checker_args or "[]")
    followed = sum(bool(response.strip()) and checkers.IFEVAL[i["id"]](response, **i["kwargs"])
                   for i in instructions)
    return len(instructions), followed


def score(items: Sequence[SuiteItem], responses: Sequence[str]) -> dict[str, SuiteScore]:
    """suite → its score over `items`, whose answers are `responses` (decoded, in the same order)."""
    totals: dict[str, list[int]] = {}
    for item, response in zip(items, responses, strict=True):
        total = totals.setdefault(item.suite, [0, 0, 0, 0])
        instructions, followed = instructions_followed(item, response)
        total[0] += 1
        total[1] += checkers.check(item.checker, item.reference_answer, item.checker_args, response)
        total[2] += instructions
        total[3] += followed
    return {suite: SuiteScore(suite, *total) for suite, total in sorted(totals.items())}


def evaluate(model, tokenizer, items: Sequence[SuiteItem], eos_ids: Sequence[int], pad_id: int,
             max_new_tokens: int = 192, batch_size: int = 16) -> dict[str, SuiteScore]:
    """Greedy answers of `model` to every item, scored by the items' checkers."""
    answers = greedy_answers(model, [i.prompt_ids for i in items], eos_ids, pad_id, max_new_tokens, batch_size)
    return score(items, [tokenizer.decode(a, skip_special_tokens=True) for a in answers])


def pool(runs: Sequence[dict[str, SuiteScore]]) -> dict[str, SuiteScore]:
    """Several runs' scores summed per suite (e.g. one stream over seeds: more items, a tighter rate)."""
    suites = sorted({suite for run in runs for suite in run})
    return {suite: SuiteScore(suite, *(sum(getattr(run[suite], field) for run in runs if suite in run)
                                       for field in ("items", "passed", "instructions", "instructions_followed")))
            for suite in suites}
