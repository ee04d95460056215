"""`HeldOut.weighted`: a slice stratified evenly across groups, measured as a stream spends its tokens — each
group's tokens weigh its share of the KL, alike within the group — on a tiny real transformers model."""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prism_assets.distill import losses
from prism_assets.distill.loader import collate
from prism_assets.distill.train import HeldOut, position_logits
from prism_assets.valuation import progress

VOCAB = 48
# prompt id → (group, response tokens): the groups hold different token counts, so weighting by tokens and by
# group differ
PROMPTS = {"a1": ("A", 2), "a2": ("A", 6), "b1": ("B", 3), "d1": ("D", 5)}


@pytest.fixture(scope="module")
def slice_and_model():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))
    rng = np.random.default_rng(0)
    examples = [progress.Candidate(key, rng.integers(1, VOCAB, 4), rng.integers(1, VOCAB, length),
                                   torch.zeros(length, VOCAB)).example for key, (_, length) in PROMPTS.items()]
    batch = collate(examples)
    heldout = HeldOut(batch, torch.log_softmax(torch.randn(batch.positions.numel(), VOCAB), -1))
    with torch.inference_mode():
        per_token = losses.dense_kl(position_logits(model, batch), heldout.teacher_logprobs.float()).double()
    rows = (batch.positions // batch.input_ids.shape[1]).tolist()
    group_of_position = np.array([PROMPTS[batch.prompt_ids[row]][0] for row in rows])
    return heldout, model, per_token, group_of_position


def group_mean(per_token: torch.Tensor, groups: np.ndarray, group: str) -> float:
    return float(per_token[torch.from_numpy(groups == group)].mean())


def test_each_group_weighs_its_share_alike_within_the_group(slice_and_model):
    heldout, model, per_token, groups = slice_and_model
    group_of = {key: group for key, (group, _) in PROMPTS.items()}
    weighted = heldout.weighted(group_of, {"A": 0.6, "B": 0.2, "C": 0.2})  # C: not in the slice, dropped
    expected = (0.6 * group_mean(per_token, groups, "A") + 0.2 * group_mean(per_token, groups, "B")) / 0.8
    assert weighted.kl(model) == pytest.approx(expected, rel=1e-5)  # D has no share: it weighs nothing
    assert float(weighted.position_weights.sum()) == pytest.approx(1.0)
    assert float(weighted.position_weights[torch.from_numpy(groups == "D")].abs().sum()) == 0.0
    assert heldout.position_weights is None  # the original slice is left as it was


def test_shares_equal_to_the_token_shares_give_the_plain_mean(slice_and_model):
    heldout, model, per_token, groups = slice_and_model
    group_of = {key: group for key, (group, _) in PROMPTS.items()}
    shares = {group: float((groups == group).mean()) for group in set(groups)}
    assert heldout.weighted(group_of, shares).kl(model) == pytest.approx(heldout.kl(model), rel=1e-5)
    assert heldout.kl(model) == pytest.approx(float(per_token.mean()), rel=1e-5)


def test_no_group_with_a_share_is_an_error_that_names_the_shares(slice_and_model):
    heldout, *_ = slice_and_model
    with pytest.raises(ValueError, match="positive share"):
        heldout.weighted({key: group for key, (group, _) in PROMPTS.items()}, {"A": 0.0, "C": 1.0})
