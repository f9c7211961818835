"""The batched trainer against the reference trainer, and what it promises:
the same protocol, results that do not depend on batch-mates, order, repeats
or the number of processes."""

import warnings

import numpy as np
import pytest
import torch

import automl_lib.child as child_module
from automl_lib import batched
from automl_lib.batched import (
    MAX_GROUP,
    MIN_GROUPS,
    _argmax,
    parallel_map,
    plan_groups,
    train_batch,
    train_group,
    warn_if_diverged,
)
from automl_lib.child import (
    ChildResult,
    NonFiniteLossWarning,
    TrainConfig,
    build_child,
    init_weights,
    train_child,
)
from automl_lib.data import make_digits
from automl_lib.search_space import ACTIVATIONS, Architecture, SearchSpace

EVERY_ACTIVATION = SearchSpace(activations=ACTIVATIONS)
FIXED_100 = TrainConfig(max_epochs=100, patience=100, dtype="float64")


def logits(result, X, dtype=torch.float64):
    """Logits of a trained child's kept weights on the points ``X``."""
    num_features, num_classes = X.shape[1], result.weights[-1][0].shape[0]
    model = build_child(
        result.architecture,
        num_features,
        num_classes,
        dtype=dtype,
        weights=result.weights,
    )
    with torch.no_grad():
        return model(torch.as_tensor(X, dtype=dtype)).numpy()


def points(data):
    return np.concatenate([data.X_train, data.X_val])


def assert_same_outcome(batched, reference, X, tolerance=1e-9):
    assert batched.architecture == reference.architecture
    assert batched.status == reference.status
    assert batched.epochs_trained == reference.epochs_trained
    assert batched.best_epoch == reference.best_epoch
    assert batched.reward == reference.reward
    assert batched.val_accuracy == reference.val_accuracy
    if reference.weights is not None:
        difference = np.abs(logits(batched, X) - logits(reference, X)).max()
        assert difference < tolerance


def test_float64_logits_match_the_reference_after_100_steps(moons):
    # About one random architecture in 500 is chaotic enough (two one-unit
    # layers after wide ones, say) that the reference drifts by more than 1e-9
    # from itself within 100 steps when its initial weights move by one
    # rounding step; such a child cannot pass this test with any trainer.
    archs = EVERY_ACTIVATION.sample(50, seed=12) + [Architecture()]
    assert {a.depth for a in archs} == {0, 1, 2, 3, 4, 5}

    results = train_batch(archs, moons, FIXED_100, seed=0, keep_history=True)

    X = points(moons)
    for arch, result in zip(archs, results, strict=True):
        reference = train_child(arch, moons, FIXED_100, seed=0)
        assert result.epochs_trained == 100
        assert_same_outcome(result, reference, X)
        # the loss of every epoch: the weights agree after every step
        losses = np.array(result.history["loss"])
        assert np.abs(losses - reference.history["loss"]).max() < 1e-9
        assert result.history["val_accuracy"] == reference.history["val_accuracy"]
        for (W, b), (W_ref, b_ref) in zip(
            result.weights, reference.weights, strict=True
        ):
            assert W.dtype == np.float64 and W.shape == W_ref.shape
            assert b.shape == b_ref.shape


def _perturbed_init(size, seed=12345):
    """``init_weights`` with every weight moved by up to ``size``."""
    original = child_module.init_weights

    def init(arch, num_features, num_classes, seed_, dtype=torch.float32):
        generator = torch.Generator().manual_seed(seed)
        params = original(arch, num_features, num_classes, seed_, torch.float64)
        moved = []
        for W, b in params:
            noise_W = torch.rand(W.shape, generator=generator, dtype=torch.float64)
            noise_b = torch.rand(b.shape, generator=generator, dtype=torch.float64)
            moved.append(
                (
                    (W + size * (2 * noise_W - 1)).to(dtype),
                    (b + size * (2 * noise_b - 1)).to(dtype),
                )
            )
        return moved

    return init


def test_float32_rewards_change_no_more_than_under_a_tiny_perturbation(
    moons, monkeypatch
):
    # the full protocol: shorter training leaves too little room for chaos
    # (measured here: 1 of these 80 rewards moves between the trainers, 2
    # under the perturbation)
    archs = SearchSpace().sample(80, seed=2)
    config = TrainConfig()
    reference = [
        train_child(a, moons, config, seed=0, keep_history=False) for a in archs
    ]
    together = train_batch(archs, moons, config, seed=0)
    monkeypatch.setattr(child_module, "init_weights", _perturbed_init(1e-7))
    perturbed = [
        train_child(a, moons, config, seed=0, keep_history=False) for a in archs
    ]

    batched_share = np.mean(
        [r.reward != b.reward for r, b in zip(reference, together, strict=True)]
    )
    chaos_share = np.mean(
        [r.reward != p.reward for r, p in zip(reference, perturbed, strict=True)]
    )
    assert batched_share <= chaos_share + 0.03
    # what does differ differs a little
    gaps = [abs(r.reward - b.reward) for r, b in zip(reference, together, strict=True)]
    assert max(gaps) < 0.1


def test_perturbation_helper_moves_weights_by_the_size_asked():
    arch = Architecture.parse("8-tanh 4-relu")
    exact = init_weights(arch, 2, 2, seed=0, dtype=torch.float64)
    moved = _perturbed_init(1e-7)(arch, 2, 2, 0, torch.float64)
    for (W, b), (W_moved, b_moved) in zip(exact, moved, strict=True):
        assert 0 < (W - W_moved).abs().max() <= 1e-7
        assert 0 < (b - b_moved).abs().max() <= 1e-7


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batch_mates_and_position_do_not_change_a_result(moons, dtype):
    config = TrainConfig(max_epochs=100, patience=20, dtype=dtype)
    target = Architecture.parse("8-tanh 4-relu")
    others = EVERY_ACTIVATION.sample(20, seed=3) + [target]
    alone = train_batch([target], moons, config)[0]
    first = train_batch([target, *others], moons, config)[0]
    last = train_batch([*reversed(others), target], moons, config)[-1]

    for result in (first, last):
        assert_same_outcome(result, alone, points(moons), tolerance=1e-9)
        # blocks hold children of one shape: the very same arithmetic
        for (W, b), (W_alone, b_alone) in zip(
            result.weights, alone.weights, strict=True
        ):
            assert np.array_equal(W, W_alone) and np.array_equal(b, b_alone)


def test_padded_blocks_follow_the_reference(moons, monkeypatch):
    # a block cost this high puts every child of an activation into one block,
    # padded to the widest; padding must change nothing but rounding
    monkeypatch.setattr(batched, "BLOCK_COST", 1e9)
    config = TrainConfig(max_epochs=60, patience=10, dtype="float64")
    archs = EVERY_ACTIVATION.sample(20, seed=10)
    results = train_batch(archs, moons, config, keep_history=True)
    X = points(moons)
    for arch, result in zip(archs, results, strict=True):
        reference = train_child(arch, moons, config)
        assert_same_outcome(result, reference, X)
        for (W, b), (W_ref, b_ref) in zip(
            result.weights, reference.weights, strict=True
        ):
            assert W.shape == W_ref.shape and b.shape == b_ref.shape


def test_a_finished_child_stays_frozen_while_others_train(moons):
    # small patience: children of one group stop at different epochs
    config = TrainConfig(max_epochs=300, patience=8, dtype="float64")
    archs = [a for a in EVERY_ACTIVATION.sample(60, seed=4) if a.depth == 2][:10]
    results = train_group(archs, moons, config)
    assert len({r.epochs_trained for r in results}) > 3

    X = points(moons)
    for arch, result in zip(archs, results, strict=True):
        assert_same_outcome(result, train_child(arch, moons, config), X)


def test_mixed_depths_the_empty_architecture_and_repeats(moons):
    texts = [
        "linear",
        "32-sigmoid 1-elu 4-tanh 2-relu 16-sigmoid",
        "1-relu",
        "linear",
        "2-elu 32-sigmoid",
        "1-relu",
        "16-tanh 16-tanh 16-tanh",
    ]
    archs = [Architecture.parse(t) for t in texts]
    config = TrainConfig(max_epochs=60, patience=10, dtype="float64")
    results = train_batch(archs, moons, config)

    assert [r.architecture for r in results] == archs
    X = points(moons)
    for arch, result in zip(archs, results, strict=True):
        assert_same_outcome(result, train_child(arch, moons, config), X)
    assert results[0].reward == results[3].reward
    assert len(results[0].weights) == 1 and results[0].weights[0][0].shape == (2, 2)


def test_last5_rule_and_history_follow_the_reference(moons):
    config = TrainConfig(
        max_epochs=80, patience=5, reward_rule="last5", dtype="float64"
    )
    archs = EVERY_ACTIVATION.sample(8, seed=5)
    results = train_batch(archs, moons, config, keep_history=True)
    for arch, result in zip(archs, results, strict=True):
        reference = train_child(arch, moons, config)
        assert result.reward == reference.reward
        assert result.history["val_accuracy"] == reference.history["val_accuracy"]


def test_more_features_and_classes_follow_the_reference():
    digits = make_digits()
    config = TrainConfig(max_epochs=15, patience=15, dtype="float64")
    archs = [Architecture(), Architecture.parse("16-relu 8-tanh")]
    results = train_batch(archs, digits, config, keep_history=True)
    X = points(digits)
    for arch, result in zip(archs, results, strict=True):
        reference = train_child(arch, digits, config)
        assert_same_outcome(result, reference, X)
        assert (
            np.abs(np.array(result.history["loss"]) - reference.history["loss"]).max()
            < 1e-9
        )


def test_the_same_request_twice_is_bit_identical(moons):
    archs = SearchSpace().sample(20, seed=6)
    config = TrainConfig(max_epochs=100, patience=20)
    first = train_batch(archs, moons, config, seed=3)
    second = train_batch(archs, moons, config, seed=3)
    for a, b in zip(first, second, strict=True):
        assert a.reward == b.reward and a.epochs_trained == b.epochs_trained
        for (W, bias), (W2, bias2) in zip(a.weights, b.weights, strict=True):
            assert W.dtype == np.float32
            assert np.array_equal(W, W2) and np.array_equal(bias, bias2)


def test_two_processes_give_bit_identical_results(moons):
    archs = SearchSpace().sample(12, seed=7)
    config = TrainConfig(max_epochs=60, patience=20)
    # small groups, so that both workers get some
    here = train_batch(archs, moons, config, processes=1, max_group=4)
    there = train_batch(archs, moons, config, processes=2, max_group=4)
    for a, b in zip(here, there, strict=True):
        assert a.reward == b.reward and a.best_epoch == b.best_epoch
        for (W, bias), (W2, bias2) in zip(a.weights, b.weights, strict=True):
            assert np.array_equal(W, W2) and np.array_equal(bias, bias2)


def test_non_finite_loss_is_the_defined_outcome_next_to_healthy_children(moons):
    # a huge step blows some children up at once, others survive it
    config = TrainConfig(max_epochs=40, patience=40, lr=1e20)
    texts = ["32-relu 32-relu", "8-tanh 8-tanh", "4-sigmoid 4-elu", "32-relu 2-tanh"]
    archs = [Architecture.parse(t) for t in texts]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteLossWarning)
        reference = [train_child(a, moons, config) for a in archs]
    with pytest.warns(NonFiniteLossWarning, match="non-finite") as caught:
        results = train_batch(archs, moons, config)

    statuses = [r.status for r in results]
    assert statuses == [r.status for r in reference]
    assert "ok" in statuses and "non-finite" in statuses
    named = [str(a) for a, s in zip(archs, statuses, strict=True) if s == "non-finite"]
    assert sorted(str(w.message).split(":")[0] for w in caught) == sorted(
        f"child {name}" for name in named
    )
    for result, ref in zip(results, reference, strict=True):
        assert (result.reward, result.epochs_trained) == (
            ref.reward,
            ref.epochs_trained,
        )
        if result.status == "non-finite":
            assert result.weights is None and result.val_accuracy == 0.0


def test_workers_send_diverged_results_back_for_the_caller_to_warn(moons):
    bad = moons.__class__(
        moons.X_train * np.float32(1e38),
        moons.y_train,
        moons.X_val,
        moons.y_val,
        *moons.test_split(),
        moons.num_classes,
    )
    arch = Architecture.parse("4-relu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [quiet] = train_group([arch], bad, TrainConfig(), warn=False)
    assert quiet.status == "non-finite" and quiet.epochs_trained == 0
    with pytest.warns(NonFiniteLossWarning, match="4-relu"):
        assert warn_if_diverged(quiet) == quiet
    healthy = ChildResult(arch, 0.5, 0.5, 3, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_diverged(healthy) is healthy


def test_plan_groups_is_a_deterministic_partition_by_depth():
    archs = SearchSpace().sample(300, seed=8) + [Architecture()] * 3
    groups = plan_groups(archs, max_group=16)
    assert groups == plan_groups(list(archs), max_group=16)
    assert sorted(i for g in groups for i in g) == list(range(len(archs)))
    for group in groups:
        assert 1 <= len(group) <= 16
        assert len({archs[i].depth for i in group}) == 1
    depths = [archs[g[0]].depth for g in groups]
    assert depths == sorted(depths)
    assert plan_groups([]) == []
    with pytest.raises(ValueError, match="max_group"):
        plan_groups(archs, max_group=0)


def test_a_small_request_is_cut_into_several_groups():
    # one episode's worth of children of one depth still makes MIN_GROUPS groups
    archs = [a for a in SearchSpace().sample(200, seed=3) if a.depth == 5][:12]
    assert len(archs) == 12
    groups = plan_groups(archs)
    assert len(groups) == MIN_GROUPS and sorted(map(len, groups)) == [3, 3, 3, 3]
    assert len(plan_groups(archs, min_groups=1)) == 1
    # a large request keeps groups of MAX_GROUP, whatever min_groups
    many = [a for a in SearchSpace().sample(3000, seed=3) if a.depth == 5][:384]
    sizes = {len(g) for g in plan_groups(many)}
    assert sizes == {MAX_GROUP} and len(plan_groups(many)) == 384 // MAX_GROUP
    # the plan is a function of the request alone
    assert plan_groups(archs) == plan_groups(list(archs))
    with pytest.raises(ValueError, match="min_groups"):
        plan_groups(archs, min_groups=0)


def test_train_group_wants_one_depth(moons):
    archs = [Architecture.parse("4-relu"), Architecture.parse("4-relu 4-relu")]
    with pytest.raises(ValueError, match="one depth"):
        train_group(archs, moons)
    assert train_group([], moons) == []
    assert train_batch([], moons) == []


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_argmax_is_pytorchs_with_ties_and_nan(num_classes):
    generator = torch.Generator().manual_seed(num_classes)
    logits = torch.randint(0, 3, (6, num_classes, 50), generator=generator).float()
    logits[0, 1, :5] = float("nan")
    logits[1, 0, 5:10] = float("nan")
    logits[2, :, 10:15] = float("nan")
    assert torch.equal(_argmax(logits), logits.argmax(dim=1))


def test_parallel_map_keeps_order_and_checks_processes():
    assert parallel_map(abs, [-3, 1, -2]) == [3, 1, 2]
    with pytest.raises(ValueError, match="processes"):
        parallel_map(abs, [1], processes=0)
