import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from automl_lib.child import TrainConfig, train_child
from automl_lib.controller import Controller
from automl_lib.data import from_arrays
from automl_lib.plotting import (
    moving_average,
    plot_accuracy_histogram,
    plot_curves,
    plot_decision_regions,
    plot_depth_shares,
    plot_rewards,
    plot_splits,
    plot_step_distributions,
    plot_training_curve,
)
from automl_lib.search_space import Architecture, SearchSpace

matplotlib.use("Agg")

FAST = TrainConfig(max_epochs=40, patience=5)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def trained(moons):
    return train_child(Architecture.parse("8-tanh"), moons, FAST, seed=0)


def history(num=30):
    return [
        {"episode": e, "mean_reward": e / num, "baseline": e / (2 * num)}
        for e in range(1, num + 1)
    ]


def test_moving_average_is_the_mean_of_the_last_window_values():
    assert np.allclose(moving_average([1, 2, 3, 4], window=2), [1, 1.5, 2.5, 3.5])
    assert np.allclose(moving_average([5.0], window=20), [5.0])


def test_plot_rewards_draws_reward_average_and_optional_baseline():
    assert len(plot_rewards(history()).lines) == 3
    assert len(plot_rewards(history(), show_baseline=False).lines) == 2


def test_plot_decision_regions_titles_with_accuracy_and_refuses_three_features(
    moons, trained
):
    ax = plot_decision_regions(
        trained.architecture, trained.weights, moons.X_val, moons.y_val
    )
    assert "accuracy" in ax.get_title()
    X3 = np.zeros((5, 3))
    with pytest.raises(ValueError, match="2 features"):
        plot_decision_regions(trained.architecture, trained.weights, X3, np.zeros(5))


def test_plot_accuracy_histogram_labels_its_axes():
    ax = plot_accuracy_histogram(np.linspace(0.5, 1.0, 50), bins=10)
    assert ax.get_xlabel() == "validation accuracy"


def test_plot_splits_draws_one_collection_per_split_with_sizes_in_legend(moons):
    ax = plot_splits(moons, title="moons")
    assert len(ax.collections) == 3
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["train (700)", "validation (200)", "test (100)"]
    assert ax.get_title() == "moons"


def test_plot_splits_refuses_other_than_two_features():
    rng = np.random.default_rng(0)
    data = from_arrays(rng.normal(size=(200, 3)), np.arange(200) % 2)
    with pytest.raises(ValueError, match="2 features"):
        plot_splits(data)


def test_plot_training_curve_marks_best_epoch_and_needs_history(moons, trained):
    ax = plot_training_curve(trained)
    xs = [line.get_xdata()[0] for line in ax.lines[1:]]
    assert trained.best_epoch in xs
    assert len(ax.figure.axes) == 2  # accuracy and the loss twin
    bare = train_child(trained.architecture, moons, FAST, keep_history=False)
    with pytest.raises(ValueError, match="history"):
        plot_training_curve(bare)


def test_plot_step_distributions_leaves_forbidden_tokens_blank():
    controller = Controller(SearchSpace(), seed=0)
    distributions = controller.step_distributions(Architecture.parse("8-tanh"))
    ax = plot_step_distributions(distributions, controller.token_names(), title="t")
    table = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
    assert table.shape == (len(controller.token_names()) - 1, len(distributions))
    # step 0 chooses among units and end; step 1 among activations
    assert np.isnan(table[:, 1]).sum() == len(SearchSpace().units) + 1
    assert math.isclose(float(np.nansum(table[:, 0])), 1.0, rel_tol=1e-5)
    assert len(ax.texts) == int(np.isfinite(table).sum())


def test_plot_depth_shares_bars_sum_to_one_per_sample():
    space = SearchSpace()
    samples = {m: space.sample(200, seed=0, method=m) for m in ("uniform", "depth")}
    ax = plot_depth_shares(samples, space.max_layers)
    heights = [p.get_height() for p in ax.patches]
    per_sample = len(heights) // 2
    assert math.isclose(sum(heights[:per_sample]), 1.0)
    assert math.isclose(sum(heights[per_sample:]), 1.0)


def test_plot_curves_draws_one_smoothed_line_per_curve():
    ax = plot_curves({"a": [0.0, 1.0, 0.0, 1.0], "b": [1.0] * 4}, window=2)
    assert len(ax.lines) == 2
    assert np.allclose(ax.lines[0].get_ydata(), [0.0, 0.5, 0.5, 0.5])
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3, 4]
    ax = plot_curves({"a": [0.0, 1.0]}, start=0)
    assert list(ax.lines[0].get_xdata()) == [0, 1]
