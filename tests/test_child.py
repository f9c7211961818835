import math

import numpy as np
import pytest
import torch

from automl_lib.child import (
    EarlyStopping,
    TrainConfig,
    build_child,
    child_seed,
    compute_reward,
    init_weights,
    score,
    train_child,
)
from automl_lib.search_space import Architecture

ARCH = Architecture.parse("8-tanh 4-relu 4-relu")


def run_scripted(accuracies, patience):
    """Feed a scripted sequence to EarlyStopping as the trainer does."""
    stopper = EarlyStopping(patience)
    kept_at, seen = None, []
    for epoch, acc in enumerate(accuracies, start=1):
        seen.append(acc)
        if stopper.update(acc, epoch):
            kept_at = epoch
        if stopper.should_stop:
            break
    return stopper, kept_at, seen


def test_early_stopping_follows_a_scripted_sequence():
    # only a strict improvement resets patience: the tie at epoch 4 does not
    script = [0.5, 0.7, 0.6, 0.7, 0.65, 0.69, 0.9, 0.95]
    stopper, kept_at, seen = run_scripted(script, patience=3)
    assert seen == [0.5, 0.7, 0.6, 0.7, 0.65]
    assert stopper.best == 0.7 and stopper.best_epoch == 2 and kept_at == 2

    config = TrainConfig(reward_exponent=3)
    assert compute_reward(seen, stopper.best, config) == pytest.approx(0.7**3)
    literal = TrainConfig(reward_rule="last5", reward_exponent=1)
    assert compute_reward([0.1, 0.9, 0.3, 0.4, 0.5, 0.6, 0.2], 0.9, literal) == 0.6


def test_early_stopping_runs_to_the_end_while_improving():
    stopper, kept_at, seen = run_scripted([0.1, 0.2, 0.3, 0.4], patience=1)
    assert seen == [0.1, 0.2, 0.3, 0.4] and kept_at == 4 and not stopper.should_stop


def test_trainer_keeps_best_weights_and_stops_after_patience(moons):
    config = TrainConfig(patience=20)
    result = train_child(ARCH, moons, config, seed=0)
    history = result.history["val_accuracy"]
    assert result.val_accuracy == max(history)
    assert history.index(max(history)) + 1 == result.best_epoch
    assert result.epochs_trained == len(history)
    if result.epochs_trained < config.max_epochs:
        assert result.epochs_trained == result.best_epoch + config.patience
    # the returned weights are the best epoch's, not the last epoch's
    assert score(ARCH, result.weights, moons.X_val, moons.y_val) == result.val_accuracy
    assert result.reward == pytest.approx(result.val_accuracy**3)


def test_last5_rule_sits_below_the_peak_with_early_stopping(moons):
    best = train_child(ARCH, moons, TrainConfig(patience=20), seed=0)
    literal = train_child(ARCH, moons, TrainConfig(patience=20, reward_rule="last5"))
    assert literal.reward == pytest.approx(max(best.history["val_accuracy"][-5:]) ** 3)
    assert literal.reward <= best.reward


def test_trainer_is_deterministic_for_a_seed(moons):
    config = TrainConfig(max_epochs=60)
    a = train_child(ARCH, moons, config, seed=5)
    b = train_child(ARCH, moons, config, seed=5)
    c = train_child(ARCH, moons, config, seed=6)
    assert a.history == b.history and a.reward == b.reward
    assert a.history != c.history


def test_initial_weights_depend_only_on_seed_and_architecture():
    first = init_weights(ARCH, 2, 2, seed=1)
    again = init_weights(ARCH, 2, 2, seed=1)
    other = init_weights(Architecture.parse("8-tanh 4-relu 4-tanh"), 2, 2, seed=1)
    assert all(torch.equal(w, v) for (w, _), (v, _) in zip(first, again, strict=True))
    assert not torch.equal(first[0][0], other[0][0])
    assert child_seed(1, ARCH) != child_seed(2, ARCH)
    # within torch's default bounds for nn.Linear
    assert first[0][0].abs().max() <= 1 / math.sqrt(2)


def test_build_child_layers_and_empty_architecture():
    net = build_child(ARCH, num_features=2, num_classes=3)
    assert [tuple(p.shape) for p in net.parameters()] == [
        (8, 2),
        (8,),
        (4, 8),
        (4,),
        (4, 4),
        (4,),
        (3, 4),
        (3,),
    ]
    linear = build_child(Architecture(), 2, 2)
    assert len(linear) == 1
    assert linear(torch.zeros(5, 2)).shape == (5, 2)


def test_linear_classifier_trains_like_any_child(moons):
    result = train_child(Architecture(), moons, TrainConfig(max_epochs=200), seed=0)
    # a linear boundary gets most of two moons right, with no bonus or penalty
    assert 0.75 < result.val_accuracy < 0.95
    assert result.reward == pytest.approx(result.val_accuracy**3)


def test_non_finite_loss_gets_a_defined_reward_and_a_warning(moons):
    from automl_lib.child import NonFiniteLossWarning

    bad = moons.__class__(
        moons.X_train * np.float32(1e38),
        moons.y_train,
        moons.X_val,
        moons.y_val,
        *moons.test_split(),
        moons.num_classes,
    )
    with pytest.warns(NonFiniteLossWarning, match="32-relu"):
        result = train_child(Architecture.parse("32-relu"), bad, TrainConfig())
    assert result.status == "non-finite" and result.reward == 0.0


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("max_epochs", 0, ValueError),
        ("max_epochs", 2.5, TypeError),
        ("patience", -1, ValueError),
        ("lr", 0.0, ValueError),
        ("lr", float("nan"), ValueError),
        ("reward_exponent", float("inf"), ValueError),
        ("reward_rule", "last", ValueError),
    ],
)
def test_bad_train_config(field, value, error):
    with pytest.raises(error, match=field):
        TrainConfig(**{field: value})
