"""Interactive front ends over plain functions, and the toy problems they show.

Each ``*_widget`` function wraps a plain function (``show_*`` or ``run_*``)
that takes ordinary arguments, draws one figure and returns what it computed.
The notebooks call the plain function once with fixed arguments, so an executed
notebook shows a result without a browser; tests drive both. Only the widgets
need ipywidgets (``pip install "automl_lib[notebooks]"``).
Notebooks 01 (data), 02 (children), 04 (controller), 05 (REINFORCE), 06 (live
search) and 07 (random architectures) use it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from .child import ChildResult, TrainConfig, train_child
from .controller import Controller
from .data import Dataset, make_two_moons
from .evaluation import Evaluator, FunctionEvaluator
from .plotting import (
    plot_decision_regions,
    plot_splits,
    plot_step_distributions,
    plot_training_curve,
)
from .reinforce import Search, SearchConfig
from .search_space import Architecture, Layer, SearchSpace

VARIANTS = ("correct", "detached", "flipped")
"""REINFORCE variants of :class:`ToySearch`: the right one and two defects."""

LAZY = {"continuous_update": False}
"""Sliders re-run their function when released, not at every pixel dragged."""


def _ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError as error:
        raise ImportError(
            "the widgets need ipywidgets: pip install 'automl_lib[notebooks]' "
            "(or pip install ipywidgets)"
        ) from error
    return ipywidgets


def _show_message(text: str) -> None:
    """A figure holding one line of text: how widgets report a refused input."""
    _, ax = plt.subplots(figsize=(6.0, 1.0))
    ax.axis("off")
    ax.text(0, 0.5, text, wrap=True)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text table: numbers right-aligned, floats with three decimals.

    Examples
    --------
    >>> print(format_table(["depth", "share"], [[1, 0.5], [2, 0.25]]))
    depth  share
    -----  -----
        1  0.500
        2  0.250
    """

    def cell(value: Any) -> str:
        if isinstance(value, float | np.floating):
            return f"{value:.3f}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    numeric = [
        all(isinstance(row[i], int | float | np.number) for row in rows)
        for i in range(len(header))
    ]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(padded).rstrip()

    rules = ["-" * w for w in widths]
    return "\n".join([line(list(header)), line(rules), *(line(r) for r in cells)])


# notebook 01: the data ------------------------------------------------------


def show_moons(
    num_points: int = 1000, noise: float = 0.2, seed: int = 0, ax: Axes | None = None
) -> Dataset:
    """Draw two moons split into train, validation and test; return the data.

    Parameters
    ----------
    num_points, noise, seed
        Passed to :func:`automl_lib.data.make_two_moons`.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    """
    data = make_two_moons(num_points, noise, seed)
    title = f"{num_points} points, noise {noise:.2f}, seed {seed}"
    plot_splits(data, ax=ax, title=title)
    return data


def moons_widget(num_points: int = 1000, noise: float = 0.2, seed: int = 0) -> Any:
    """Sliders for points, noise and seed over :func:`show_moons`.

    A setting the data module refuses (a split that would miss a class) is
    reported on the figure.

    Returns
    -------
    ipywidgets.interactive
        ``.result`` holds the last :class:`~automl_lib.data.Dataset`, or None
        after a refused setting.
    """
    w = _ipywidgets()

    def view(num_points: int, noise: float, seed: int) -> Dataset | None:
        try:
            return show_moons(num_points, noise, seed)
        except ValueError as error:  # e.g. a split that misses a class
            _show_message(str(error))
            return None

    return w.interactive(
        view,
        num_points=w.IntSlider(
            num_points, min=50, max=3000, step=50, description="points", **LAZY
        ),
        noise=w.FloatSlider(
            noise, min=0.0, max=0.6, step=0.05, description="noise", **LAZY
        ),
        seed=w.IntSlider(seed, min=0, max=20, description="seed", **LAZY),
    )


# notebook 02: one child -------------------------------------------------------


def show_child(
    arch: Architecture | str,
    data: Dataset,
    config: TrainConfig | None = None,
    seed: int = 0,
    axes: Sequence[Axes] | None = None,
) -> ChildResult:
    """Train one child, then draw its training curve and its decision regions.

    The regions are those of the kept (best-epoch) weights, drawn over the
    validation points, the points the reward is measured on.

    Parameters
    ----------
    arch : Architecture or str
        For example ``"8-tanh 4-relu 4-relu"``.
    data : Dataset
        Two features.
    config : TrainConfig, optional
    seed : int, default 0
    axes : two matplotlib Axes, optional
        Curve and regions; a new figure by default.
    """
    if isinstance(arch, str):
        arch = Architecture.parse(arch)
    result = train_child(arch, data, config, seed, keep_history=True)
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10.0, 3.6), layout="tight")
    if result.weights is None or result.history is None:
        axes[0].set_title(f"{arch}: training diverged, reward {result.reward}")
        return result
    plot_training_curve(result, ax=axes[0])
    title = f"val. accuracy {result.val_accuracy:.3f}, reward {result.reward:.3f}"
    plot_decision_regions(
        arch, result.weights, data.X_val, data.y_val, ax=axes[1], title=title
    )
    return result


def architecture_from_controls(
    depth: int, units: Sequence[int], activations: Sequence[str]
) -> Architecture:
    """The architecture made of the first ``depth`` (units, activation) pairs."""
    pairs = list(zip(units, activations, strict=True))[:depth]
    return Architecture.from_pairs(pairs)


def child_widget(
    data: Dataset,
    config: TrainConfig | None = None,
    seed: int = 0,
    space: SearchSpace | None = None,
    initial: str = "8-tanh 4-relu 4-relu",
) -> Any:
    """Pick depth, units and activation per layer; see :func:`show_child`.

    Controls of layers deeper than ``depth`` are greyed out.

    Returns
    -------
    ipywidgets.interactive
        ``.result`` holds the last :class:`~automl_lib.child.ChildResult`.
    """
    w = _ipywidgets()
    space = space or SearchSpace()
    start = space.check(Architecture.parse(initial))
    default = Layer(space.units[len(space.units) // 2], space.activations[0])
    layers = [*start.layers, *[default] * (space.max_layers - start.depth)]
    depth = w.IntSlider(
        start.depth, min=0, max=space.max_layers, description="depth", **LAZY
    )
    controls: dict[str, Any] = {"depth": depth}
    for i, layer in enumerate(layers, start=1):
        controls[f"units_{i}"] = w.Dropdown(
            options=list(space.units), value=layer.units, description=f"units {i}"
        )
        controls[f"activation_{i}"] = w.Dropdown(
            options=list(space.activations), value=layer.activation, description="act."
        )

    def view(depth: int, **layer_values: Any) -> ChildResult:
        units = [layer_values[f"units_{i}"] for i in range(1, space.max_layers + 1)]
        acts = [layer_values[f"activation_{i}"] for i in range(1, space.max_layers + 1)]
        return show_child(
            architecture_from_controls(depth, units, acts), data, config, seed
        )

    def grey_out(_: Any = None) -> None:
        for i in range(1, space.max_layers + 1):
            controls[f"units_{i}"].disabled = i > depth.value
            controls[f"activation_{i}"].disabled = i > depth.value

    widget = w.interactive(view, **controls)
    depth.observe(grey_out, names="value")
    grey_out()
    rows = [
        w.HBox([controls[f"units_{i}"], controls[f"activation_{i}"]])
        for i in range(1, space.max_layers + 1)
    ]
    widget.children = (depth, *rows, widget.out)
    return widget


# notebooks 04 and 05: toy rewards and the controller --------------------------


def first_units_reward(arch: Architecture, units: int = 32) -> float:
    """Toy reward: 1 if the first hidden layer has ``units`` units, else 0."""
    return float(arch.depth > 0 and arch.units[0] == units)


def target_reward(arch: Architecture, target: Architecture | str) -> float:
    """Toy reward: the share of ``target``'s decisions that ``arch`` repeats.

    Layer by layer, a matching unit count and a matching activation count one
    each; the sum is divided by twice the larger depth, so only ``target``
    itself scores 1 and every extra or missing layer costs.

    Examples
    --------
    >>> target_reward(Architecture.parse("8-tanh 4-relu"), "8-tanh 4-relu")
    1.0
    >>> target_reward(Architecture.parse("8-relu"), "8-tanh 4-relu")
    0.25
    """
    if isinstance(target, str):
        target = Architecture.parse(target)
    depth = max(arch.depth, target.depth)
    if depth == 0:
        return 1.0
    matches = sum(
        (mine.units == theirs.units) + (mine.activation == theirs.activation)
        for mine, theirs in zip(arch.layers, target.layers, strict=False)
    )
    return matches / (2 * depth)


def first_decision_probability(controller: Controller, name: str) -> float:
    """Exact probability that the controller's first decision is token ``name``.

    With :func:`first_units_reward` this is the expected reward J.
    """
    names, probs = controller.step_distributions()[0]
    if name not in names:
        raise ValueError(f"{name!r} is not a first decision; choose from {names}")
    return probs[names.index(name)]


def train_controller(
    reward_fn: Callable[[Architecture], float],
    episodes: int = 200,
    space: SearchSpace | None = None,
    seed: int = 0,
) -> Controller:
    """A controller trained by :class:`~automl_lib.reinforce.Search` on a
    closed-form reward (no child is trained), with the default settings."""
    config = SearchConfig(episodes=episodes)
    search = Search(space or SearchSpace(), FunctionEvaluator(reward_fn), config, seed)
    search.run(progress=False)
    return search.controller


def show_controller(
    controller: Controller,
    arch: Architecture | str | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> list[tuple[list[str], list[float]]]:
    """Draw the choice probabilities at each step along ``arch``.

    Parameters
    ----------
    controller : Controller
    arch : Architecture or str, optional
        The path whose steps are shown; the greedy architecture if None or "".
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    list of (names, probabilities)
        As :meth:`Controller.step_distributions`.
    """
    if isinstance(arch, str):
        arch = Architecture.parse(arch) if arch.strip() else None
    path = controller.greedy() if arch is None else arch
    distributions = controller.step_distributions(path)
    if title is None:
        title = f"along {'greedy ' if arch is None else ''}path {path}"
    plot_step_distributions(distributions, controller.token_names(), ax, title)
    return distributions


def controller_widget(controllers: Mapping[str, Controller], path: str = "") -> Any:
    """Choose a controller and a path; see :func:`show_controller`.

    An empty path follows the controller's greedy choices. A path that does
    not parse or lies outside the space is reported on the figure.
    """
    w = _ipywidgets()

    def view(name: str, path: str) -> list[tuple[list[str], list[float]]] | None:
        try:
            return show_controller(controllers[name], path)
        except ValueError as error:
            _show_message(f"path {path!r}: {error}")
            return None

    return w.interactive(
        view,
        name=w.Dropdown(options=list(controllers), description="controller"),
        path=w.Text(path, description="path", continuous_update=False),
    )


class ToySearch(Search):
    """:class:`~automl_lib.reinforce.Search` with one of the report's defects.

    ``variant`` is ``"correct"`` (the library's search unchanged),
    ``"detached"`` (log-probabilities and entropies leave the graph and come
    back as fresh tensors, so no gradient reaches the controller) or
    ``"flipped"`` (the policy term's sign is reversed: the update is fed
    ``-R``, and the recorded baseline is that of ``-R``).
    """

    def __init__(
        self,
        space: SearchSpace,
        evaluator: Evaluator,
        config: SearchConfig | None = None,
        seed: int = 0,
        variant: str = "correct",
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        super().__init__(space, evaluator, config, seed)
        self.variant = variant

    def propose(self) -> list[Architecture]:
        archs = super().propose()
        if self.variant == "detached" and self._sample is not None:
            sample = self._sample
            self._sample = dataclasses.replace(
                sample,
                log_probs=sample.log_probs.detach().clone().requires_grad_(True),
                entropies=sample.entropies.detach().clone().requires_grad_(True),
            )
        return archs

    def learn(self, rewards: list[float]) -> dict[str, float]:
        if self.variant == "flipped":
            return super().learn([-r for r in rewards])
        return super().learn(rewards)


@dataclasses.dataclass
class ToyRun:
    """A :class:`ToySearch` on :func:`first_units_reward` and its exact
    expected reward J after every episode (index 0: before training)."""

    search: ToySearch
    expected_rewards: list[float]

    @property
    def mean_rewards(self) -> list[float]:
        return [row["mean_reward"] for row in self.search.history]


def run_toy_search(
    lr: float = 0.01,
    entropy_weight: float = 0.01,
    baseline_decay: float = 0.9,
    variant: str = "correct",
    episodes: int = 150,
    batch_size: int = 15,
    units: int = 32,
    seed: int = 0,
    ax: Axes | None = None,
) -> ToyRun:
    """REINFORCE on the toy reward "first layer has ``units`` units".

    Draws the batch-mean reward and the exact expected reward J per episode.

    Parameters
    ----------
    lr, entropy_weight, baseline_decay, episodes, batch_size
        See :class:`~automl_lib.reinforce.SearchConfig`.
    variant : {"correct", "detached", "flipped"}, default "correct"
        See :class:`ToySearch`.
    units : int, default 32
    seed : int, default 0
    ax : matplotlib Axes, optional
    """
    config = SearchConfig(
        episodes=episodes,
        batch_size=batch_size,
        lr=lr,
        entropy_weight=entropy_weight,
        baseline_decay=baseline_decay,
    )
    reward_fn = functools.partial(first_units_reward, units=units)
    search = ToySearch(
        SearchSpace(), FunctionEvaluator(reward_fn), config, seed, variant
    )
    expected = [first_decision_probability(search.controller, str(units))]

    def record(strategy: Any) -> None:
        expected.append(first_decision_probability(strategy.controller, str(units)))

    search.run(progress=False, callback=record)
    run = ToyRun(search, expected)

    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.5))
    episode_axis = np.arange(1, episodes + 1)
    ax.plot(episode_axis, run.mean_rewards, lw=1, alpha=0.4, label="batch mean reward")
    ax.plot(np.arange(episodes + 1), expected, lw=2, label="exact J")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("episode")
    ax.set_ylabel("reward")
    ax.set_title(
        f"{variant}: lr {lr:g}, entropy weight {entropy_weight:g}, "
        f"decay {baseline_decay:g}"
    )
    ax.legend(loc="center right", fontsize="small")
    return run


def reinforce_widget(episodes: int = 150, seed: int = 0) -> Any:
    """Learning rate, entropy weight, baseline decay and variant over
    :func:`run_toy_search`."""
    w = _ipywidgets()
    return w.interactive(
        run_toy_search,
        lr=w.FloatLogSlider(0.01, base=10, min=-4, max=-0.5, description="lr", **LAZY),
        entropy_weight=w.FloatSlider(
            0.01, min=0.0, max=0.5, step=0.01, description="entropy w.", **LAZY
        ),
        baseline_decay=w.FloatSlider(
            0.9, min=0.0, max=0.99, step=0.01, description="decay", **LAZY
        ),
        variant=w.Dropdown(options=list(VARIANTS), description="variant"),
        episodes=w.fixed(episodes),
        batch_size=w.fixed(15),
        units=w.fixed(32),
        seed=w.fixed(seed),
        ax=w.fixed(None),
    )


# notebooks 06 and 07: a search live, and the random architectures -------------


def show_search_progress(
    strategy: Any, window: int = 20, axes: Sequence[Axes] | None = None
) -> str:
    """Draw a search's reward, baseline and entropy so far; return a status line.

    Parameters
    ----------
    strategy : Strategy
        A running or finished search (its ``history`` and ``best``).
    window : int, default 20
        Moving-average window in episodes.
    axes : two matplotlib Axes, optional
    """
    from .plotting import plot_search_overview

    plot_search_overview(strategy.history, window, axes)
    best = strategy.best
    best_text = "none"
    if best is not None:
        best_text = f"{best.architecture} ({best.val_accuracy:.3f})"
    return (
        f"episode {strategy.episode} of {strategy.episodes}; children trained "
        f"{strategy.children_trained}; best {best_text}"
    )


class LiveSearchView:
    """A live view of a running search: pass the instance as ``callback``.

    Every ``every`` episodes (and after the last) it redraws
    :func:`show_search_progress` inside an ipywidgets ``Output``. Executed
    without a browser it draws into the widget's state and breaks nothing.

    Examples
    --------
    >>> view = LiveSearchView(every=10)        # doctest: +SKIP
    >>> display(view.widget)                   # doctest: +SKIP
    >>> search.run(callback=view)              # doctest: +SKIP
    """

    def __init__(self, every: int = 10, window: int = 20) -> None:
        w = _ipywidgets()
        self.every = every
        self.window = window
        self.status = w.HTML("waiting for the first episode")
        self.output = w.Output()
        self.widget = w.VBox([self.status, self.output])
        self.num_draws = 0

    def __call__(self, strategy: Any) -> None:
        if strategy.episode % self.every and not strategy.done:
            return
        from IPython.display import display

        with self.output:
            self.output.clear_output(wait=True)
            fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.4))
            self.status.value = show_search_progress(strategy, self.window, axes)
            fig.tight_layout()
            display(fig)
            plt.close(fig)
        self.num_draws += 1


ANY = "any"
"""Dropdown entry that switches a filter off."""


def show_member(
    table: Sequence[dict[str, Any]],
    data: Dataset,
    depth: int | None = None,
    narrowest: int | None = None,
    activation: str | None = None,
    member: int = 0,
    config: TrainConfig | None = None,
    seed: int = 0,
    ax: Axes | None = None,
) -> tuple[dict[str, Any], ChildResult] | None:
    """Filter random architectures, retrain one member and draw its decision
    regions over the validation points.

    Parameters
    ----------
    table : rows of :func:`automl_lib.experiments.architecture_table`
        With ``architecture``, ``val_accuracy``, ``depth``, ``narrowest`` and
        ``activation``.
    data : Dataset
    depth, narrowest, activation : optional
        Filters (None: any); ``activation`` is "relu", "tanh" or "mixed".
    member : int, default 0
        Which of the distinct matching architectures (wraps around).
    config : TrainConfig, optional
    seed : int, default 0
        The seed the table was trained with: the child gets the same initial
        weights, so it trains to the stored accuracy (up to float32 rounding).

    Returns
    -------
    (row, ChildResult) or None
        None when no architecture matches.
    """
    from .experiments import filter_table

    first_rows: dict[str, dict[str, Any]] = {}
    for row in filter_table(table, depth, narrowest, activation):
        first_rows.setdefault(row["architecture"], row)
    distinct = list(first_rows.values())
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 4.0))
    if not distinct:
        ax.axis("off")
        ax.text(0.5, 0.5, "no architecture matches", ha="center")
        return None
    row = distinct[member % len(distinct)]
    arch = Architecture.parse(row["architecture"])
    result = _train_cached(arch, data, config, seed)
    title = (
        f"{arch}  ({member % len(distinct) + 1} of {len(distinct)})\n"
        f"stored val. acc. {row['val_accuracy']:.3f}, now {result.val_accuracy:.3f}"
    )
    if result.weights is None:
        ax.set_title(title + ": training diverged")
        return row, result
    plot_decision_regions(arch, result.weights, data.X_val, data.y_val, ax=ax)
    ax.set_title(title, fontsize="small")
    return row, result


_MEMBERS: dict[tuple[Any, ...], ChildResult] = {}


def _train_cached(
    arch: Architecture, data: Dataset, config: TrainConfig | None, seed: int
) -> ChildResult:
    # a widget redraws on every control change: train each member once
    key = (arch, data.fingerprint(), config, seed)
    if key not in _MEMBERS:
        if len(_MEMBERS) >= 64:
            _MEMBERS.clear()
        _MEMBERS[key] = train_child(arch, data, config, seed, keep_history=False)
    return _MEMBERS[key]


def member_widget(
    table: Sequence[dict[str, Any]],
    data: Dataset,
    config: TrainConfig | None = None,
    seed: int = 0,
    space: SearchSpace | None = None,
) -> Any:
    """Dropdowns for depth, narrowest layer and activations, and a member
    slider, over :func:`show_member`.

    Returns
    -------
    ipywidgets.interactive
        ``.result`` holds the last ``(row, ChildResult)`` (or None).
    """
    w = _ipywidgets()
    space = space or SearchSpace()
    depth = w.Dropdown(
        options=[(ANY, None), *((str(d), d) for d in range(1, space.max_layers + 1))],
        description="depth",
    )
    narrowest = w.Dropdown(
        options=[(ANY, None), *((str(u), u) for u in space.units)],
        description="narrowest",
    )
    activation = w.Dropdown(
        options=[(ANY, None), *((a, a) for a in (*space.activations, "mixed"))],
        description="activation",
    )
    member = w.IntSlider(0, min=0, max=50, description="member", **LAZY)
    return w.interactive(
        show_member,
        table=w.fixed(table),
        data=w.fixed(data),
        depth=depth,
        narrowest=narrowest,
        activation=activation,
        member=member,
        config=w.fixed(config),
        seed=w.fixed(seed),
        ax=w.fixed(None),
    )
