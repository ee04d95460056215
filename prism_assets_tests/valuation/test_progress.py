"""Learning-progress labels with the real offline teacher and the pruned student."""

import numpy as np
import torch

from prism_assets.distill.student import load_student
from prism_assets.distill.train import held_out
from prism_assets.valuation import progress

QUESTIONS = ["What is the capital of France?", "Name three primary colors.", "What is 12 times 7?",
             "Who wrote Hamlet?", "Give a synonym for happy.", "What is the boiling point of water in Celsius?",
             "Translate 'thank you' to Spanish.", "How many legs does a spider have?"]


def shuffled(teacher, candidate: progress.Candidate, rng: np.random.Generator) -> progress.Candidate:
    """The same tokens in random order, with the teacher's logits over that sequence."""
    sequence = rng.permutation(np.concatenate([candidate.prompt_ids, candidate.response_ids]))
    prompt, response = sequence[: len(candidate.prompt_ids)], sequence[len(candidate.prompt_ids):]
    [logits] = list(teacher.response_logits([prompt.tolist()], [response.tolist()]))
    return progress.Candidate("shuffled-" + candidate.prompt_id, prompt, response, logits.to(torch.float16))


def test_a_batch_like_the_heldout_slice_teaches_more_than_its_shuffled_tokens(teacher):
    student, _ = load_student(device="cpu")
    prompts = [(f"q{i}", [{"role": "user", "content": q}]) for i, q in enumerate(QUESTIONS)]
    heldout = held_out(teacher, prompts[:4], 16)
    preconditioner = progress.warm_up(student, progress.candidates(teacher, prompts[4:], 16, 0), 30, 4, 1e-4,
                                      0).preconditioner
    matching = progress.candidates(teacher, prompts[:2], 16, 0)
    rng = np.random.default_rng(0)
    before = [p.detach().clone() for p in student.parameters()]
    records = progress.label(student, matching + [shuffled(teacher, c, rng) for c in matching], heldout,
                             progress.ProgressConfig(updates=2), preconditioner)
    assert all(torch.equal(p, q) for p, q in zip(student.parameters(), before))  # every label restored the student
    match, shuffle = [r["lp_value"] for r in records[:2]], [r["lp_value"] for r in records[2:]]
    assert min(match) > 0 and sum(match) > 2 * sum(shuffle)
    assert {r["heldout_kl_before"] for r in records} == {records[0]["heldout_kl_before"]}
