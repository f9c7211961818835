import io
import math

import pytest
import torch

from automl_lib.controller import Controller
from automl_lib.search_space import Architecture, SearchSpace


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_sample_shapes_and_architectures_in_space():
    space = SearchSpace()
    sample = Controller(space, seed=0).sample(64, gen())
    assert sample.log_probs.shape == sample.entropies.shape == (64, space.num_steps)
    assert all(arch in space for arch in sample.architectures)
    assert len({a.depth for a in sample.architectures}) > 2


def test_decisions_alternate_units_and_activations():
    controller = Controller(SearchSpace(), seed=0)
    sample = controller.sample(32, gen())
    for row, made in zip(sample.decisions.tolist(), sample.made.tolist(), strict=True):
        for step, (token, was_made) in enumerate(zip(row, made, strict=True)):
            if not was_made:
                assert token == -1
            elif step % 2:
                assert controller.activation_mask[token]
            else:
                assert controller.unit_mask[token]


def test_sequence_log_prob_matches_teacher_forcing():
    controller = Controller(SearchSpace(), seed=1)
    sample = controller.sample(16, gen(2))
    again = controller.evaluate(sample.architectures)
    assert torch.allclose(sample.log_probs, again.log_probs, atol=1e-6)
    assert torch.equal(sample.decisions, again.decisions)


def test_entropy_of_a_uniform_choice_is_log_n():
    space = SearchSpace()
    controller = Controller(space, seed=0)
    with torch.no_grad():
        for p in controller.head.parameters():
            p.zero_()
    sample = controller.sample(4, gen())
    # step 0 chooses among 6 unit counts and end; step 1 among 2 activations
    assert torch.allclose(sample.entropies[:, 0], torch.tensor(math.log(7)))
    layered = sample.made[:, 1]
    assert torch.allclose(sample.entropies[layered, 1], torch.tensor(math.log(2)))


def test_decisions_after_end_get_exactly_zero_gradient():
    space = SearchSpace(max_layers=3)
    controller = Controller(space, seed=0)
    short = [Architecture.parse("8-relu"), Architecture()]
    sample = controller.evaluate(short)
    assert sample.made.tolist() == [
        [True, True, True, False, False, False],
        [True, False, False, False, False, False],
    ]
    after_end = (sample.log_probs * ~sample.made).sum() + (
        sample.entropies * ~sample.made
    ).sum()
    assert after_end.item() == 0.0
    after_end = (
        sample.log_probs[~sample.made].sum() + sample.entropies[~sample.made].sum()
    )
    assert not after_end.requires_grad or all(
        g is None or torch.count_nonzero(g) == 0
        for g in torch.autograd.grad(
            after_end, list(controller.parameters()), allow_unused=True
        )
    )


def test_end_only_where_a_layer_could_start():
    controller = Controller(SearchSpace(), seed=0)
    for step in range(controller.space.num_steps):
        assert bool(controller.step_mask(step)[controller.end_token]) == (step % 2 == 0)
        assert not controller.step_mask(step)[0]  # start is never emitted


def test_full_depth_needs_no_end_token():
    space = SearchSpace(max_layers=2)
    controller = Controller(space, seed=0)
    arch = Architecture.parse("8-relu 4-tanh")
    assert -1 not in controller.to_tokens(arch)
    assert controller.to_architecture(controller.to_tokens(arch)) == arch


def test_greedy_is_per_step_argmax():
    controller = Controller(SearchSpace(), seed=3)
    arch = controller.greedy()
    steps = controller.step_distributions(arch)
    for i, (names, probs) in enumerate(steps):
        chosen = names[probs.index(max(probs))]
        if chosen != "end":
            layer = arch.layers[i // 2]
            assert chosen == (str(layer.units) if i % 2 == 0 else layer.activation)


def test_same_seed_same_samples_and_global_state_untouched():
    torch.manual_seed(0)
    state = torch.random.get_rng_state().clone()
    a = Controller(SearchSpace(), seed=4).sample(20, gen(9)).architectures
    b = Controller(SearchSpace(), seed=4).sample(20, gen(9)).architectures
    c = Controller(SearchSpace(), seed=4).sample(20, gen(10)).architectures
    assert a == b and a != c
    assert torch.equal(state, torch.random.get_rng_state())


def test_save_and_load_round_trip_and_refuse_other_space():
    space = SearchSpace(units=(2, 4, 8))
    controller = Controller(space, seed=0)
    buffer = io.BytesIO()
    torch.save(controller.to_payload(), buffer)
    buffer.seek(0)
    loaded = Controller.load(buffer, space)
    assert loaded.greedy() == controller.greedy()
    buffer.seek(0)
    with pytest.raises(ValueError, match="units"):
        Controller.load(buffer, SearchSpace())


@pytest.mark.parametrize("field, value", [("hidden_size", 0), ("num_layers", 1.5)])
def test_bad_controller_sizes(field, value):
    with pytest.raises((TypeError, ValueError), match=field):
        Controller(SearchSpace(), **{field: value})
