import functools
import sys

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch

from automl_lib import widgets
from automl_lib.child import ChildResult, TrainConfig
from automl_lib.controller import Controller
from automl_lib.data import Dataset
from automl_lib.evaluation import FunctionEvaluator
from automl_lib.reinforce import Search, SearchConfig
from automl_lib.search_space import Architecture, SearchSpace

matplotlib.use("Agg")
pytest.importorskip("ipywidgets")

FAST = TrainConfig(max_epochs=30, patience=5)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def control(widget, description):
    """The control of an interactive widget with this description."""
    for child in widget.kwargs_widgets:
        if child.description == description:
            return child
    raise KeyError(description)


# helpers ---------------------------------------------------------------------


def test_format_table_aligns_numbers_right_and_text_left():
    text = widgets.format_table(["name", "n", "x"], [["a", 1, 0.5], ["bb", 10, 2.0]])
    assert text.splitlines() == [
        "name   n      x",
        "----  --  -----",
        "a      1  0.500",
        "bb    10  2.000",
    ]


def test_widgets_say_how_to_install_ipywidgets_when_it_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(ImportError, match="pip install"):
        widgets.moons_widget()


# notebook 01 -----------------------------------------------------------------


def test_show_moons_returns_the_data_it_draws():
    fig, ax = plt.subplots()
    data = widgets.show_moons(num_points=200, noise=0.1, seed=3, ax=ax)
    assert isinstance(data, Dataset)
    assert data.sizes == (140, 40, 20)
    assert "noise 0.10" in ax.get_title()
    assert len(ax.collections) == 3


def test_moons_widget_redraws_when_a_slider_moves():
    widget = widgets.moons_widget(num_points=200, seed=0)
    assert widget.result.sizes == (140, 40, 20)
    first = widget.result.X_train.copy()

    control(widget, "points").value = 400
    assert widget.kwargs["num_points"] == 400
    assert widget.result.sizes == (280, 80, 40)

    control(widget, "points").value = 200
    control(widget, "seed").value = 1
    assert widget.result.sizes == (140, 40, 20)
    assert not (widget.result.X_train == first).all()


def test_moons_widget_reports_a_refused_setting_instead_of_raising():
    widget = widgets.moons_widget(num_points=50, seed=0)
    assert widget.result.sizes == (35, 10, 5)
    seed = control(widget, "seed")
    seed.max = 40
    seed.value = 29  # its 5 test points hold one class only
    assert widget.kwargs["seed"] == 29
    assert widget.result is None


# notebook 02 -----------------------------------------------------------------


def test_architecture_from_controls_keeps_the_first_depth_layers():
    arch = widgets.architecture_from_controls(2, [8, 4, 32], ["tanh", "relu", "relu"])
    assert arch == Architecture.parse("8-tanh 4-relu")
    assert widgets.architecture_from_controls(0, [8], ["tanh"]) == Architecture()


def test_show_child_trains_and_draws_curve_and_regions(moons):
    fig, axes = plt.subplots(1, 2)
    result = widgets.show_child("4-tanh", moons, FAST, seed=0, axes=axes)
    assert isinstance(result, ChildResult)
    assert result.architecture == Architecture.parse("4-tanh")
    assert result.history is not None
    assert f"{result.val_accuracy:.3f}" in axes[1].get_title()
    assert axes[0].get_xlabel() == "epoch"


def test_child_widget_retrains_when_depth_units_or_activation_change(moons):
    widget = widgets.child_widget(moons, FAST, initial="8-tanh 4-relu")
    assert widget.result.architecture == Architecture.parse("8-tanh 4-relu")
    assert control(widget, "units 3").disabled
    assert not control(widget, "units 2").disabled

    control(widget, "depth").value = 1
    assert widget.result.architecture == Architecture.parse("8-tanh")
    assert control(widget, "units 2").disabled

    control(widget, "units 1").value = 32
    assert widget.result.architecture == Architecture.parse("32-tanh")
    assert widget.kwargs["units_1"] == 32


def test_child_widget_refuses_an_initial_architecture_outside_the_space(moons):
    with pytest.raises(ValueError):
        widgets.child_widget(moons, FAST, initial="3-tanh")


# notebooks 04 and 05: toy rewards and the controller ---------------------------


def test_first_units_reward_is_one_only_for_the_chosen_first_layer():
    assert widgets.first_units_reward(Architecture.parse("32-relu 1-tanh")) == 1.0
    assert widgets.first_units_reward(Architecture.parse("1-tanh 32-relu")) == 0.0
    assert widgets.first_units_reward(Architecture()) == 0.0
    assert widgets.first_units_reward(Architecture.parse("8-tanh"), units=8) == 1.0


def test_target_reward_counts_matching_decisions():
    target = "8-tanh 4-relu 4-relu"
    assert widgets.target_reward(Architecture.parse(target), target) == 1.0
    assert widgets.target_reward(Architecture.parse("8-tanh"), target) == 2 / 6
    longer = Architecture.parse(target + " 4-relu")
    assert widgets.target_reward(longer, target) == 6 / 8
    assert widgets.target_reward(Architecture(), "linear") == 1.0
    assert widgets.target_reward(Architecture(), target) == 0.0


def test_first_decision_probability_is_the_softmax_of_the_first_step():
    controller = Controller(SearchSpace(), seed=0)
    logits, _ = controller.step_logits(torch.zeros(1, dtype=torch.long), None, 0)
    expected = torch.softmax(logits, dim=-1)[0, controller.token_names().index("32")]
    got = widgets.first_decision_probability(controller, "32")
    assert got == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="first decision"):
        widgets.first_decision_probability(controller, "relu")


def test_train_controller_is_reproducible_and_learns_the_toy_target():
    reward = functools.partial(widgets.target_reward, target="32-tanh")
    first = widgets.train_controller(reward, episodes=60, seed=1)
    second = widgets.train_controller(reward, episodes=60, seed=1)
    for p, q in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(p, q)
    fresh = Controller(SearchSpace(), seed=1)
    learnt = widgets.first_decision_probability(first, "32")
    assert learnt > widgets.first_decision_probability(fresh, "32") + 0.2


def test_show_controller_follows_the_greedy_path_by_default():
    controller = Controller(SearchSpace(), seed=0)
    fig, ax = plt.subplots()
    greedy = widgets.show_controller(controller, None, ax=ax)
    assert greedy == widgets.show_controller(controller, "")
    assert str(controller.greedy()) in ax.get_title()
    along = widgets.show_controller(controller, "linear")
    assert len(along) == 1  # the path ends at once
    with pytest.raises(ValueError):
        widgets.show_controller(controller, "8-foo")


def test_controller_widget_switches_controllers_and_reports_bad_paths():
    space = SearchSpace()
    fresh = Controller(space, seed=0)
    other = Controller(space, seed=5)
    widget = widgets.controller_widget({"fresh": fresh, "other": other}, path="8-tanh")
    assert widget.result == fresh.step_distributions(Architecture.parse("8-tanh"))

    control(widget, "controller").value = "other"
    assert widget.kwargs["name"] == "other"
    assert widget.result == other.step_distributions(Architecture.parse("8-tanh"))

    control(widget, "path").value = "3-tanh"  # not in the space
    assert widget.result is None


def test_toy_search_refuses_an_unknown_variant():
    toy = FunctionEvaluator(widgets.first_units_reward)
    with pytest.raises(ValueError, match="variant"):
        widgets.ToySearch(SearchSpace(), toy, variant="backwards")


def test_toy_search_correct_variant_is_the_library_search():
    config = SearchConfig(episodes=5, batch_size=4)
    toy = FunctionEvaluator(widgets.first_units_reward)
    ours = widgets.ToySearch(SearchSpace(), toy, config, seed=2).run(progress=False)
    theirs = Search(SearchSpace(), toy, config, seed=2).run(progress=False)
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in ours.history] == [
        {k: v for k, v in r.items() if k not in drop} for r in theirs.history
    ]


def test_run_toy_search_records_exact_reward_and_defects_behave():
    correct = widgets.run_toy_search(episodes=30, seed=0)
    assert len(correct.expected_rewards) == 31
    assert len(correct.mean_rewards) == 30
    assert correct.expected_rewards[-1] > correct.expected_rewards[0] + 0.2

    detached = widgets.run_toy_search(episodes=10, variant="detached", seed=0)
    assert len(set(detached.expected_rewards)) == 1
    fresh = Controller(SearchSpace(), seed=0)
    controller = detached.search.controller
    for p, q in zip(controller.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q)

    flipped = widgets.run_toy_search(episodes=30, variant="flipped", seed=0)
    assert flipped.expected_rewards[-1] < flipped.expected_rewards[0]


def test_run_toy_search_is_reproducible():
    first = widgets.run_toy_search(episodes=8, seed=3)
    second = widgets.run_toy_search(episodes=8, seed=3)
    assert first.expected_rewards == second.expected_rewards


def test_reinforce_widget_reruns_with_new_settings():
    widget = widgets.reinforce_widget(episodes=8)
    before = widget.result.expected_rewards
    assert widget.kwargs["lr"] == pytest.approx(0.01)

    control(widget, "lr").value = 0.1
    assert widget.kwargs["lr"] == pytest.approx(0.1)
    assert widget.result.expected_rewards != before

    control(widget, "variant").value = "detached"
    assert len(set(widget.result.expected_rewards)) == 1
    assert widget.result.search.config.lr == pytest.approx(0.1)
