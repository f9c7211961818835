import json

import numpy as np
import pytest

from automl_lib.search_space import Architecture, Layer, SearchSpace


def test_default_space_size():
    space = SearchSpace()
    assert space.num_architectures(include_empty=False) == 271_452
    assert space.num_architectures() == 271_453


@pytest.mark.parametrize(
    "units, activations, max_layers",
    [((1, 2), ("relu",), 3), ((4, 8, 16), ("relu", "tanh"), 2), ((3,), ("tanh",), 4)],
)
def test_size_matches_enumeration(units, activations, max_layers):
    space = SearchSpace(units, activations, max_layers)
    archs = list(space.architectures())
    assert len(archs) == len(set(archs)) == space.num_architectures()
    assert all(arch in space for arch in archs)


def test_readable_form_round_trips():
    arch = Architecture.parse("8-tanh 4-relu 4-relu")
    assert str(arch) == "8-tanh 4-relu 4-relu"
    assert arch.units == (8, 4, 4) and arch.activations == ("tanh", "relu", "relu")
    assert Architecture.parse(str(arch)) == arch
    assert Architecture.from_json(arch.to_json()) == arch
    assert json.loads(arch.to_json()) == [[8, "tanh"], [4, "relu"], [4, "relu"]]
    assert hash(arch) == hash(Architecture.parse("8-tanh  4-relu 4-relu"))


def test_empty_architecture_is_a_linear_classifier():
    empty = Architecture()
    assert str(empty) == "linear" and empty.depth == 0 and empty.narrowest is None
    assert Architecture.parse("linear") == empty == Architecture.from_json("[]")
    assert empty in SearchSpace()


@pytest.mark.parametrize("text", ["8tanh", "x-relu", "8-swish", "-relu", "8-"])
def test_parse_rejects_malformed_text(text):
    with pytest.raises(ValueError, match="8tanh|x-relu|swish|-relu|8-"):
        Architecture.parse(text)


def test_space_checks_membership():
    space = SearchSpace(max_layers=2)
    with pytest.raises(ValueError, match="3 layers"):
        space.check(Architecture.parse("8-relu 8-relu 8-relu"))
    with pytest.raises(ValueError, match="units 3"):
        space.check(Architecture.parse("3-relu"))
    assert Architecture.parse("8-elu") not in space


def test_depth_sampler_represents_every_depth_equally():
    archs = SearchSpace().sample(5000, seed=0)
    counts = np.bincount([a.depth for a in archs], minlength=6)[1:]
    assert counts.min() > 900 and counts.max() < 1100
    assert all(a in SearchSpace() and a.depth >= 1 for a in archs)


def test_uniform_sampler_is_dominated_by_the_deepest():
    archs = SearchSpace().sample(2000, seed=0, method="uniform")
    share_deepest = np.mean([a.depth == 5 for a in archs])
    # 12**5 of the 271,452 non-empty architectures have depth 5
    assert share_deepest == pytest.approx(12**5 / 271_452, abs=0.03)


def test_sampling_is_seeded_and_leaves_global_state_alone():
    state = np.random.get_state()[1].copy()
    first = SearchSpace().sample(50, seed=3)
    assert first == SearchSpace().sample(50, seed=3)
    assert first != SearchSpace().sample(50, seed=4)
    assert np.array_equal(state, np.random.get_state()[1])


def test_numpy_integers_are_accepted():
    space = SearchSpace(units=np.array([2, 4]), max_layers=np.int64(3))
    assert space.units == (2, 4) and type(space.units[0]) is int
    assert space.max_layers == 3


def test_dict_round_trip_and_difference():
    space = SearchSpace(units=(2, 4), max_layers=3)
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert "units" in SearchSpace().describe_difference(space)


def test_layer_prints():
    assert str(Layer(8, "tanh")) == "8-tanh"
