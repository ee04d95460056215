"""The proof's students continue the warm-up's optimizer: `progress.warm_up` hands over its AdamW state and
`distill.train` resumes it, on a tiny real transformers model."""

import copy

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prism_assets.distill.loader import batches, collate
from prism_assets.distill.train import DistillConfig, HeldOut, train
from prism_assets.valuation import progress

VOCAB = 48


def tiny_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))


def candidates(count: int, seed: int) -> list[progress.Candidate]:
    rng = np.random.default_rng(seed)
    return [progress.Candidate(f"c{seed}-{i}", rng.integers(1, VOCAB, 5), rng.integers(1, VOCAB, 4),
                               torch.from_numpy(rng.normal(0, 3, (4, VOCAB))).to(torch.float16)) for i in range(count)]


def test_training_continues_the_warm_up_optimizer_and_leaves_its_state_as_it_was():
    student = tiny_model()
    warmed = progress.warm_up(student, candidates(8, 0), 6, 4, 1e-3, 0)
    saved = copy.deepcopy(warmed.optimizer_state)
    pool = candidates(4, 1)
    evaluation = collate([c.example for c in candidates(2, 2)])
    heldout = HeldOut(evaluation, torch.log_softmax(torch.randn(evaluation.positions.numel(), VOCAB), -1))
    config = DistillConfig(signal="online", loss="dense", steps=1, batch_size=4, learning_rate=1e-3, eval_every=1)
    logits = {c.prompt_id: c.teacher_logits for c in pool}

    def run(optimizer_state):
        model = copy.deepcopy(student)
        train(model, lambda: batches([c.example for c in pool], 4), config, heldout,
              lambda batch: torch.cat([logits[k] for k in batch.prompt_ids]).float(), lambda line: None,
              optimizer_state)
        return model

    carried, fresh = run(warmed.optimizer_state), run(None)
    # the same step by hand: the warm-up's AdamW, one more online-KD step on the same batch
    by_hand = copy.deepcopy(student)
    optimizer = torch.optim.AdamW(by_hand.parameters(), lr=1e-3, weight_decay=0.0)
    optimizer.load_state_dict(copy.deepcopy(saved))
    progress.kd_step(by_hand, optimizer, collate([c.example for c in pool]), torch.cat(list(logits.values())))
    for a, b in zip(carried.parameters(), by_hand.parameters()):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, c) for a, c in zip(carried.parameters(), fresh.parameters()))
    # the state the proof shares between its runs was not advanced by them
    for key, value in saved["state"].items():
        for name, tensor in value.items():
            torch.testing.assert_close(warmed.optimizer_state["state"][key][name], tensor)


def test_the_held_out_step_is_a_labels_clipped_preconditioned_descent_on_the_slice():
    student = tiny_model()
    evaluation = collate([c.example for c in candidates(3, 3)])
    heldout = HeldOut(evaluation, torch.log_softmax(3 * torch.randn(evaluation.positions.numel(), VOCAB), -1))
    preconditioner = [torch.rand_like(p) + 0.5 for p in student.parameters()]
    config = progress.ProgressConfig(step_size=1e-3, updates=2)
    weights = [p.detach().clone() for p in student.parameters()]
    step = progress.heldout_step(student, heldout, preconditioner, config)
    assert all(torch.equal(p, w) for p, w in zip(student.parameters(), weights))  # it only reads the student
    # undo the preconditioner and the step size: what is left is the gradient clipped to norm 1, as the labels clip
    clipped = [s / (-config.step_size * config.updates * scale) for s, scale in zip(step, preconditioner)]
    assert float(torch.nn.utils.get_total_norm(clipped)) == pytest.approx(1.0, rel=1e-4)
    before = heldout.kl(student)
    with torch.no_grad():
        for parameter, change in zip(student.parameters(), step):
            parameter.add_(change)
    assert heldout.kl(student) < before  # downhill for the slice
