import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from automl_lib import experiments as ex
from automl_lib.child import TrainConfig
from automl_lib.data import make_two_moons
from automl_lib.evaluation import ChildEvaluator, FunctionEvaluator
from automl_lib.plotting import (
    histogram_edges,
    plot_architecture_trends,
    plot_best_so_far,
    plot_entropy,
    plot_peaks,
    plot_seed_comparison,
)
from automl_lib.reinforce import Search, SearchConfig
from automl_lib.search_space import Architecture, SearchSpace
from automl_lib.strategies import RandomSearch

TINY = TrainConfig(max_epochs=4, patience=4)


@pytest.fixture(scope="module")
def small_moons():
    return make_two_moons(num_points=60, seed=0)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def rows(pairs):
    return [{"val_accuracy": a, "cached": c} for a, c in pairs]


# curves -----------------------------------------------------------------------


def test_best_so_far_skips_cached_children():
    x, y = ex.best_so_far(rows([(0.5, False), (0.9, True), (0.7, False), (0.6, False)]))
    assert x.tolist() == [1, 2, 3]
    assert y.tolist() == [0.5, 0.7, 0.7]


def test_change_points_rebuild_the_curve_on_a_grid():
    x = np.arange(1, 8)
    y = np.array([0.5, 0.5, 0.8, 0.8, 0.8, 0.9, 0.9])
    cx, cy = ex.change_points(x, y)
    assert cx.tolist() == [1, 3, 6, 7]
    np.testing.assert_array_equal(ex.curve_on_grid(cx, cy, x), y)
    outside = ex.curve_on_grid(cx, cy, np.array([0, 8]))
    assert np.isnan(outside).all()


def test_first_reach_and_mean_and_sem():
    x, y = np.array([1, 4, 9]), np.array([0.5, 0.9, 0.95])
    assert ex.first_reach(x, y, 0.9) == 4
    assert ex.first_reach(x, y, 0.99) is None
    mean, sem = ex.mean_and_sem([1.0, 2.0, 3.0])
    assert mean == 2.0 and sem == pytest.approx(1 / math.sqrt(3))
    assert math.isnan(ex.mean_and_sem([1.0])[1])
    row = {"a": 0.96501, "a_sem": 0.0021}
    assert ex.plus_minus(row, "a") == "0.9650 ± 0.0021"


# evaluators and runs ----------------------------------------------------------


def test_counting_evaluator_counts_what_it_returns_not_what_was_prefetched():
    inner = FunctionEvaluator(lambda arch: float(arch.depth))
    view = ex.CountingEvaluator(inner)
    a, b = Architecture.parse("8-relu"), Architecture.parse("4-tanh 2-relu")
    view.prefetch([a, b])
    results = view.evaluate([a, a, b])
    assert [r.cached for r in results] == [False, True, False]
    assert view.num_trained == 2
    assert [r.cached for r in view.evaluate([b])] == [True]


def test_planned_random_architectures_match_random_search():
    space = SearchSpace()
    planned = ex.planned_random_architectures(space, 10**6, 4, batch_size=5, seed=3)
    search = RandomSearch(space, FunctionEvaluator(lambda a: 0.0), 4, 5, seed=3)
    search.run(progress=False)
    assert [str(a) for a in planned] == [c["architecture"] for c in search.children]


def test_run_until_trained_stops_at_the_budget():
    space = SearchSpace()
    evaluator = ex.CountingEvaluator(FunctionEvaluator(lambda a: 0.5))
    search = RandomSearch(space, evaluator, episodes=50, batch_size=5, seed=0)
    ex.run_until_trained(search, 12)
    assert 12 <= search.children_trained < 17
    assert search.episode < 50


@pytest.mark.parametrize("strategy", ["reinforce", "random"])
def test_run_task_is_deterministic_for_a_seed(small_moons, strategy):
    search = SearchConfig(episodes=6, batch_size=4)
    task = ex.RunTask(strategy, 1, small_moons, train=TINY, search=search)
    first, second = ex.run_task(task), ex.run_task(task)
    first.seconds = second.seconds = 0.0
    assert first == second
    assert first.children_sampled == 24
    assert first.curve_x[-1] == first.children_trained


def test_random_task_trains_the_same_children_as_plain_random_search(small_moons):
    search = SearchConfig(episodes=5, batch_size=4)
    task = ex.RunTask("random", 2, small_moons, train=TINY, search=search)
    record = ex.run_task(task)
    plain = RandomSearch(
        SearchSpace(), ChildEvaluator(small_moons, TINY, 2), 5, 4, seed=2
    ).run(progress=False)
    assert record.children_trained == plain.children_trained
    assert record.best_val_accuracy == plain.best.val_accuracy


def test_comparison_summary_and_storage_round_trip(small_moons, tmp_path):
    settings = ex.ComparisonSettings(
        seeds=(0, 1),
        num_trained=6,
        max_episodes=3,
        batch_size=4,
        fresh_seeds=(7, 8),
        train=TINY,
    )
    comparison = ex.run_comparison(small_moons, settings)
    assert [r.label for r in comparison.runs] == ["reinforce", "random"] * 2
    assert len(comparison.retrained) == 2 * len(
        {r.best_architecture for r in comparison.runs}
    )
    differences = comparison.differences("best_val_accuracy", "reinforce", "random")
    table = {
        (r["label"], r["seed"]): r["best_val_accuracy"] for r in comparison.table()
    }
    assert differences == [
        table[("reinforce", s)] - table[("random", s)] for s in (0, 1)
    ]
    summary = comparison.summary()
    assert [row["label"] for row in summary] == ["reinforce", "random"]
    assert all(0 <= row["retrained_accuracy"] <= 1 for row in summary)

    ex.save_comparison(tmp_path, comparison)
    loaded = ex.load_comparison(tmp_path)
    assert loaded.runs == comparison.runs
    assert loaded.table() == comparison.table()
    grid = np.arange(1, 7)
    curves = loaded.curves(grid)
    assert curves["random"].shape == (2, 6)
    reach = loaded.reach(0.0)
    assert all(row["children"] == 1 for row in reach)


def test_ablation_changes_one_setting_per_variant(small_moons):
    variants = {"default": {}, "exponent 1": {"reward_exponent": 1.0}}
    ablation = ex.run_ablation(
        small_moons,
        seeds=(0,),
        episodes=2,
        batch_size=3,
        variants=variants,
        train=TINY,
        fresh_seeds=(5,),
    )
    default, linear = ablation.runs
    assert (default.label, linear.label) == ("default", "exponent 1")
    # same seed, same children: only the reward's exponent differs
    assert default.best_val_accuracy == linear.best_val_accuracy
    assert linear.best_reward == pytest.approx(linear.best_val_accuracy)
    assert default.best_reward == pytest.approx(default.best_val_accuracy**3)


def test_retrain_is_deterministic_and_seed_dependent(small_moons):
    archs = [Architecture.parse("4-tanh"), Architecture.parse("4-tanh")]
    config = TrainConfig(max_epochs=30, patience=30)
    first = ex.retrain(archs, small_moons, [0, 1], config)
    assert first == ex.retrain(archs, small_moons, [0, 1], config)
    assert [row["seed"] for row in first] == [0, 1]
    means = ex.retrained_means(first)
    assert means["4-tanh"] == pytest.approx(np.mean([r["val_accuracy"] for r in first]))


# architectures and peaks --------------------------------------------------------


def test_describe_and_filter():
    table = ex.architecture_table(
        [{"architecture": s, "val_accuracy": 0.9} for s in ("1-relu 8-tanh", "8-tanh")]
    )
    assert table[0] | {} == {
        "architecture": "1-relu 8-tanh",
        "val_accuracy": 0.9,
        "depth": 2,
        "narrowest": 1,
        "activation": "mixed",
    }
    assert ex.describe(Architecture())["activation"] == "none"
    assert ex.filter_table(table, activation="tanh") == [table[1]]
    assert ex.filter_table(table, depth=2, narrowest=1) == [table[0]]


def test_architecture_trends_shares_sum_to_one():
    space = SearchSpace()
    children = [
        {"episode": e, "architecture": a, "val_accuracy": 0.5}
        for e in range(1, 8)
        for a in ("8-relu", "4-tanh 4-tanh")
    ]
    trends = ex.architecture_trends(children, space, window=3)
    assert trends["episode"].tolist() == [3, 6, 7]
    for key in ("depth", "units", "activations"):
        np.testing.assert_allclose(trends[key].sum(axis=1), 1.0)
    assert trends["depth"][0].tolist() == [0, 0.5, 0.5, 0, 0, 0]
    np.testing.assert_allclose(trends["activations"][0], [1 / 3, 2 / 3])


def three_modes(seed=0):
    rng = np.random.default_rng(seed)
    parts = [rng.normal(0.5, 0.01, 200), rng.normal(0.85, 0.01, 300)]
    return np.concatenate([*parts, rng.normal(0.96, 0.008, 500)])


def test_find_peaks_finds_three_modes_and_their_shares():
    peaks = ex.find_peaks(three_modes(), bandwidth=0.1)
    assert [round(p.location, 2) for p in peaks] == [0.5, 0.85, 0.96]
    assert [p.share for p in peaks] == pytest.approx([0.2, 0.3, 0.5])
    assert peaks[0].low == -math.inf and peaks[-1].high == math.inf
    assert peaks == ex.find_peaks(three_modes(), bandwidth=0.1)
    # Scott's rule smooths the two upper modes of this small sample into one
    assert len(ex.find_peaks(three_modes())) == 2


def test_describe_peaks_reports_the_bottleneck_under_the_lowest_peak():
    accuracies = three_modes()
    names = ["1-relu 8-tanh"] * 200 + ["8-relu"] * 300 + ["8-tanh 8-tanh"] * 500
    table = ex.architecture_table(
        [
            {"architecture": n, "val_accuracy": a}
            for n, a in zip(names, accuracies, strict=True)
        ]
    )
    peaks = ex.find_peaks(accuracies, bandwidth=0.1)
    low, middle, high = ex.describe_peaks(table, peaks)
    assert low["share_bottleneck_1"] == 1.0 and low["share_mixed"] == 1.0
    assert low["share_narrowest_1"] == 1.0 and low["share_narrowest_8"] == 0.0
    assert middle["narrowest"] == 8 and middle["share_relu"] == 1.0
    assert high["mean_depth"] == 2.0 and high["share"] == pytest.approx(0.5)


# storage --------------------------------------------------------------------------


def test_weights_round_trip_and_prune(small_moons, tmp_path):
    result = ChildEvaluator(small_moons, TINY).evaluate([Architecture.parse("4-relu")])[
        0
    ]
    ex.save_weights(tmp_path / "w.json", result)
    arch, weights = ex.load_weights(tmp_path / "w.json")
    assert arch == result.architecture
    for (W, b), (W0, b0) in zip(weights, result.weights, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    (tmp_path / "x.png").write_bytes(b"")
    ex.prune_run_folder(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["w.json"]


def test_run_full_search_writes_a_small_text_run_folder(tmp_path):
    config = SearchConfig(episodes=2, batch_size=3)
    summary = ex.run_full_search(tmp_path / "s", config=config, train=TINY)
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["best_weights.json", "children.csv", "history.csv", "summary.json"]
    assert summary["episodes"] == 2 and 0 <= summary["test_accuracy"] <= 1
    again = ex.run_full_search(tmp_path / "s", config=config, train=TINY)
    assert again["best_architecture"] == summary["best_architecture"]


def test_run_full_random_can_rewrite_its_folder(tmp_path):
    first = ex.run_full_random(tmp_path / "r", num=6, processes=1)
    second = ex.run_full_random(tmp_path / "r", num=6, processes=1)
    assert first["best_architecture"] == second["best_architecture"]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "children.csv",
        "summary.json",
    ]


# figures and widgets --------------------------------------------------------------


def test_plots_draw_without_error():
    history = [{"episode": e, "entropy": 5.0 - 0.1 * e} for e in range(1, 30)]
    assert plot_entropy(history).get_xlabel() == "episode"
    peaks = ex.find_peaks(three_modes(), bandwidth=0.1)
    ax = plot_peaks(three_modes(), peaks, overlay=[0.95, 0.96, 0.97])
    assert len(ax.texts) == 3
    grid = np.arange(1, 11)
    curves = {"a": np.tile(np.linspace(0.8, 0.9, 10), (3, 1))}
    assert plot_best_so_far(grid, curves, threshold=0.85).get_legend() is not None
    table = [{"label": "a", "x": 0.9}, {"label": "a", "x": 0.8}, {"label": "b", "x": 1}]
    ax = plot_seed_comparison(table, {"x": "x"})
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    children = [{"episode": 1, "architecture": "8-relu", "val_accuracy": 0.5}]
    trends = ex.architecture_trends(children, SearchSpace(), window=1)
    assert len(plot_architecture_trends(trends, SearchSpace())) == 3


def test_show_member_retrains_the_stored_child(small_moons):
    from automl_lib.widgets import show_member

    archs = ["2-relu", "4-tanh", "4-tanh", "1-relu 4-tanh"]
    trained = ChildEvaluator(small_moons, TINY, 0, trainer="reference").evaluate(
        [Architecture.parse(a) for a in archs]
    )
    table = ex.architecture_table(
        [
            {"architecture": a, "val_accuracy": r.val_accuracy}
            for a, r in zip(archs, trained, strict=True)
        ]
    )
    row, result = show_member(table, small_moons, depth=1, member=1, config=TINY)
    assert row["architecture"] == "4-tanh"
    assert result.val_accuracy == row["val_accuracy"]
    row, _ = show_member(table, small_moons, depth=1, member=2, config=TINY)
    assert row["architecture"] == "2-relu"  # two distinct members: wraps around
    assert show_member(table, small_moons, depth=5, config=TINY) is None


def test_member_widget_follows_its_controls(small_moons):
    from automl_lib.widgets import member_widget

    table = ex.architecture_table(
        [{"architecture": a, "val_accuracy": 0.5} for a in ("2-relu", "1-relu 4-tanh")]
    )
    widget = member_widget(table, small_moons, config=TINY)
    controls = {c.description: c for c in widget.children[:-1]}
    controls["narrowest"].value = 1
    assert widget.result[0]["architecture"] == "1-relu 4-tanh"
    controls["activation"].value = "relu"
    assert widget.result is None


def test_live_search_view_redraws_every_few_episodes():
    from automl_lib.widgets import LiveSearchView, show_search_progress

    view = LiveSearchView(every=3)
    toy = FunctionEvaluator(lambda arch: float(arch.depth == 1))
    search = Search(SearchSpace(), toy, SearchConfig(episodes=7), seed=0)
    search.run(progress=False, callback=view)
    assert view.num_draws == 3  # episodes 3, 6 and the last
    assert view.status.value.startswith("episode 7 of 7")
    assert show_search_progress(search).startswith("episode 7 of 7")


def test_top_threshold_counts_ties_in():
    accuracies = [0.9, 0.95, 0.95, 0.97] + [0.5] * 96
    assert ex.top_threshold(accuracies, 0.01) == 0.97
    assert ex.top_threshold(accuracies, 0.02) == 0.95
    assert ex.top_threshold(accuracies, 0.03) == 0.95
    assert ex.top_threshold(accuracies, 0.02, ties="exclude") == 0.97
    assert ex.top_threshold(accuracies, 0.03, ties="exclude") == 0.95
    assert ex.top_threshold(accuracies, 0.001, ties="exclude") == math.inf


def test_block_means():
    history = [{"episode": e, "r": float(e)} for e in range(1, 6)]
    assert ex.block_means(history, ["r"], size=2) == [
        ["1-2", 1.5],
        ["3-4", 3.5],
        ["5-5", 5.0],
    ]


def test_histogram_edges_align_to_the_accuracy_grid():
    values = [0.5, 0.505, 0.51, 0.975, 0.98]
    edges = np.asarray(histogram_edges(values, bins=48))
    counts, _ = np.histogram(np.arange(0.5, 0.9801, 0.005), bins=edges)
    # every bin holds two grid values (the last one may hold fewer)
    assert counts[:-1].tolist() == [2] * (len(counts) - 1) and counts[-1] >= 1
    assert histogram_edges([0.5, 0.5], bins=4) == [0.5, 0.75, 1.0, 1.25, 1.5]
