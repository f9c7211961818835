"""Evaluators: the cache, the choice of trainer and back end, and the function
evaluator for toy problems."""

import warnings

import numpy as np
import pytest

from automl_lib.child import NonFiniteLossWarning, TrainConfig
from automl_lib.evaluation import TRAINERS, ChildEvaluator, FunctionEvaluator
from automl_lib.search_space import Architecture, SearchSpace

SHORT = TrainConfig(max_epochs=30, patience=10)


def parse(*texts):
    return [Architecture.parse(t) for t in texts]


def test_an_architecture_is_trained_once_per_run(moons):
    evaluator = ChildEvaluator(moons, SHORT)
    a, b, c = parse("8-relu", "4-tanh 4-tanh", "linear")

    first = evaluator.evaluate([a, b, a])
    assert evaluator.num_trained == 2
    assert [r.cached for r in first] == [False, False, True]
    assert [r.architecture for r in first] == [a, b, a]
    assert first[0].reward == first[2].reward

    second = evaluator.evaluate([b, c, c])
    assert evaluator.num_trained == 3
    assert [r.cached for r in second] == [True, False, True]
    assert second[0].reward == first[1].reward

    assert evaluator.evaluate([]) == [] and evaluator.num_trained == 3


def test_cache_is_keyed_by_settings_and_can_be_shared(moons):
    cache = {}
    arch = Architecture.parse("8-relu")
    one = ChildEvaluator(moons, SHORT, seed=0, cache=cache)
    one.evaluate([arch])
    same = ChildEvaluator(moons, SHORT, seed=0, cache=cache)
    assert same.evaluate([arch])[0].cached and same.num_trained == 0
    other_seed = ChildEvaluator(moons, SHORT, seed=1, cache=cache)
    assert not other_seed.evaluate([arch])[0].cached
    longer = ChildEvaluator(moons, TrainConfig(max_epochs=31, patience=10), cache=cache)
    assert not longer.evaluate([arch])[0].cached
    assert len(cache) == 3


def test_batched_is_the_default_and_agrees_with_the_reference(moons):
    assert ChildEvaluator(moons).trainer == "batched" and TRAINERS[0] == "batched"
    config = TrainConfig(max_epochs=40, patience=10, dtype="float64")
    archs = SearchSpace().sample(6, seed=1) + [Architecture()]
    batched = ChildEvaluator(moons, config).evaluate(archs)
    reference = ChildEvaluator(moons, config, trainer="reference").evaluate(archs)
    for b, r in zip(batched, reference, strict=True):
        assert (b.reward, b.best_epoch, b.epochs_trained) == (
            r.reward,
            r.best_epoch,
            r.epochs_trained,
        )
        for (W, bias), (W_ref, bias_ref) in zip(b.weights, r.weights, strict=True):
            np.testing.assert_allclose(W, W_ref, rtol=0, atol=1e-10)
            np.testing.assert_allclose(bias, bias_ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_two_processes_give_bit_identical_rewards(moons, trainer):
    archs = SearchSpace().sample(6, seed=2)
    here = ChildEvaluator(moons, SHORT, trainer=trainer).evaluate(archs)
    there = ChildEvaluator(moons, SHORT, trainer=trainer, processes=2).evaluate(archs)
    assert [r.reward for r in here] == [r.reward for r in there]
    for a, b in zip(here, there, strict=True):
        for (W, _), (W2, _) in zip(a.weights, b.weights, strict=True):
            assert np.array_equal(W, W2)


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("processes", [1, 2])
def test_a_diverged_child_warns_once_in_the_caller(moons, trainer, processes):
    bad = moons.__class__(
        moons.X_train * np.float32(1e38),
        moons.y_train,
        moons.X_val,
        moons.y_val,
        *moons.test_split(),
        moons.num_classes,
    )
    archs = parse("16-relu", "8-relu 8-relu")
    evaluator = ChildEvaluator(bad, SHORT, trainer=trainer, processes=processes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = evaluator.evaluate(archs)
    messages = [str(w.message) for w in caught if w.category is NonFiniteLossWarning]
    assert len(messages) == 2
    assert "16-relu" in messages[0] and "8-relu 8-relu" in messages[1]
    assert all(r.status == "non-finite" and r.reward == 0.0 for r in results)


def test_unknown_trainer_is_refused(moons):
    with pytest.raises(ValueError, match="trainer"):
        ChildEvaluator(moons, trainer="fast")


def test_bad_process_count_is_refused_when_training(moons):
    evaluator = ChildEvaluator(moons, SHORT, processes=0)
    with pytest.raises(ValueError, match="processes"):
        evaluator.evaluate(parse("4-relu"))


def test_function_evaluator_scores_without_training():
    evaluator = FunctionEvaluator(lambda arch: float(arch.depth == 2))
    archs = parse("8-relu 4-tanh", "8-relu", "8-relu 4-tanh")
    results = evaluator.evaluate(archs)
    assert [r.reward for r in results] == [1.0, 0.0, 1.0]
    assert [r.val_accuracy for r in results] == [1.0, 0.0, 1.0]
    assert [r.architecture for r in results] == archs
    assert all(r.weights is None and r.status == "ok" for r in results)
    assert evaluator.num_trained == 3
    evaluator.evaluate(archs[:1])
    assert evaluator.num_trained == 4
