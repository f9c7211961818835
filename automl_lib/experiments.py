"""Experiments behind notebooks 06-08: the full search, the random-architecture
histogram and the comparison of REINFORCE with random search.

The analysis functions work on plain records (the rows of a run folder's CSV
files), so a notebook can analyse stored results and fresh ones alike. The
``run_full_*`` functions produce the stored results under
``notebooks/results/``; ``python -m automl_lib.experiments`` runs them from a
terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import shutil
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .batched import parallel_map
from .child import ChildResult, TrainConfig
from .data import Dataset, make_two_moons
from .evaluation import ChildEvaluator, Evaluator
from .reinforce import Search, SearchConfig
from .runs import (
    finish_random,
    finish_search,
    prepare_folder,
    read_csv,
    read_json,
    write_csv,
    write_json,
)
from .search_space import Architecture, SearchSpace
from .strategies import RandomSearch, Strategy

logger = logging.getLogger(__name__)

Row = dict[str, Any]

ACTIVATION_MIXES = ("relu", "tanh", "mixed")
"""How the hidden layers of an architecture use activations: all ReLU, all Tanh,
or both (the empty architecture counts as neither)."""


def results_dir() -> Path:
    """``notebooks/results`` of this source tree (found from the package, so it
    does not depend on the working directory)."""
    return Path(__file__).resolve().parent.parent / "notebooks" / "results"


# an evaluator view with its own accounting


class CountingEvaluator:
    """Answer from a shared evaluator, but count children as this view sees them.

    The inner evaluator's cache may already hold results, for instance because
    :meth:`prefetch` trained a whole random search in one request. An
    architecture counts as trained here the first time *this* view returns it,
    so a strategy's budget does not depend on what was prefetched.

    Parameters
    ----------
    inner : Evaluator
        Usually a :class:`~automl_lib.evaluation.ChildEvaluator`.
    """

    def __init__(self, inner: Evaluator) -> None:
        self.inner = inner
        self.seen: set[Architecture] = set()
        self.num_trained = 0

    def prefetch(self, archs: Sequence[Architecture]) -> None:
        """Have ``archs`` evaluated now, without counting them."""
        self.inner.evaluate(list(dict.fromkeys(archs)))

    def evaluate(self, archs: Sequence[Architecture]) -> list[ChildResult]:
        results = []
        for arch, result in zip(archs, self.inner.evaluate(archs), strict=True):
            results.append(dataclasses.replace(result, cached=arch in self.seen))
            self.seen.add(arch)
        self.num_trained = len(self.seen)
        return results


def planned_random_architectures(
    space: SearchSpace,
    num_trained: int,
    max_episodes: int,
    batch_size: int = 15,
    seed: int = 0,
    method: str = "depth",
) -> list[Architecture]:
    """The architectures :class:`~automl_lib.strategies.RandomSearch` with this
    seed proposes, episode by episode, until ``num_trained`` distinct ones (or
    ``max_episodes`` episodes). Used to train a random search in one request."""
    rng = np.random.default_rng(seed)
    archs: list[Architecture] = []
    distinct: set[Architecture] = set()
    for _ in range(max_episodes):
        if len(distinct) >= num_trained:
            break
        batch = space.sample(batch_size, rng, method)
        archs.extend(batch)
        distinct.update(batch)
    return archs


def run_until_trained(
    strategy: Strategy, num_trained: int | None, progress: bool = False
) -> Strategy:
    """Run episodes until ``num_trained`` children were trained or the
    strategy's episodes are spent (``None``: all episodes)."""
    from tqdm.auto import tqdm

    limit = math.inf if num_trained is None else num_trained
    with tqdm(total=strategy.episodes, disable=not progress, desc=strategy.name) as bar:
        while not strategy.done and strategy.children_trained < limit:
            strategy.step()
            bar.update()
    return strategy


# best so far against children trained


def best_so_far(children: Sequence[Row]) -> tuple[np.ndarray, np.ndarray]:
    """Best validation accuracy after each trained child, in sampling order.

    Parameters
    ----------
    children : sequence of dict
        Rows with ``val_accuracy`` and ``cached`` (a run's ``children.csv``).
        Cached rows repeat an earlier child and cost nothing, so they are skipped.

    Returns
    -------
    num_trained : ndarray of shape (T,), int
        1, 2, ..., T: children trained so far.
    best : ndarray of shape (T,), float
        Best validation accuracy among them.

    Examples
    --------
    >>> rows = [{"val_accuracy": a, "cached": c}
    ...         for a, c in [(0.5, False), (0.9, False), (0.9, True), (0.8, False)]]
    >>> best_so_far(rows)[1].tolist()
    [0.5, 0.9, 0.9]
    """
    accuracies = [float(r["val_accuracy"]) for r in children if not r["cached"]]
    best = np.maximum.accumulate(np.asarray(accuracies, dtype=float))
    return np.arange(1, len(best) + 1), best


def change_points(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points of a step curve where ``y`` changes, and its last point;
    :func:`curve_on_grid` rebuilds the curve from them."""
    if len(x) == 0:
        return x, y
    keep = np.ones(len(y), dtype=bool)
    keep[1:] = y[1:] != y[:-1]
    keep[-1] = True
    return x[keep], y[keep]


def curve_on_grid(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Value of the step curve ``(x, y)`` at each grid point: ``y`` of the last
    ``x <= grid``; NaN before the first point and after the last one."""
    x, y, grid = np.asarray(x), np.asarray(y, dtype=float), np.asarray(grid)
    index = np.searchsorted(x, grid, side="right") - 1
    values = y[np.clip(index, 0, max(len(y) - 1, 0))] if len(y) else np.nan
    outside = (index < 0) | (grid > (x[-1] if len(x) else -np.inf))
    return np.where(outside, np.nan, values)


def first_reach(x: np.ndarray, y: np.ndarray, threshold: float) -> int | None:
    """Children trained when ``y`` first reached ``threshold`` (None: never)."""
    hits = np.flatnonzero(np.asarray(y) >= threshold)
    return int(np.asarray(x)[hits[0]]) if len(hits) else None


def top_threshold(
    accuracies: Sequence[float], share: float = 0.01, ties: str = "include"
) -> float:
    """The accuracy that marks the best ``share`` of ``accuracies``.

    Accuracies on 200 validation points come in steps of 0.005, so many
    values tie. ``ties="include"``: the accuracy of the last member of the best
    ``share`` (more than ``share`` may reach it). ``ties="exclude"``: the
    smallest accuracy that at most ``share`` of the values reach.

    Examples
    --------
    >>> values = [0.9] * 95 + [0.95] * 4 + [0.97]
    >>> top_threshold(values, 0.02), top_threshold(values, 0.02, ties="exclude")
    (0.95, 0.97)
    """
    if ties not in ("include", "exclude"):
        raise ValueError(f"ties must be 'include' or 'exclude', got {ties!r}")
    ranked = np.sort(np.asarray(accuracies, dtype=float))[::-1]
    value = float(ranked[max(math.ceil(share * len(ranked)) - 1, 0)])
    if ties == "exclude":
        higher = [v for v in np.unique(ranked) if np.mean(ranked >= v) <= share]
        value = float(min(higher)) if higher else math.inf
    return value


def mean_and_sem(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n))."""
    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return float(array.mean()), math.nan
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(len(array)))


def block_means(
    history: Sequence[Row], keys: Sequence[str], size: int = 100
) -> list[list[Any]]:
    """Means of ``keys`` over blocks of ``size`` episodes: one row per block,
    starting with its episode range such as ``"1-100"``."""
    out = []
    for start in range(0, len(history), size):
        block = history[start : start + size]
        means = [float(np.mean([row[key] for row in block])) for key in keys]
        out.append([f"{start + 1}-{start + len(block)}", *means])
    return out


def plus_minus(row: Row, key: str, digits: int = 4) -> str:
    """``row[key]`` and its standard error ``row[key + "_sem"]`` as text,
    for example ``"0.9650 ± 0.0021"`` (rows of :meth:`Comparison.summary`)."""
    return f"{row[key]:.{digits}f} ± {row[key + '_sem']:.{digits}f}"


# architectures as records


def describe(arch: Architecture) -> dict[str, Any]:
    """Depth, narrowest layer and activation mix of one architecture."""
    kinds = set(arch.activations)
    mix = "none" if not kinds else (kinds.pop() if len(kinds) == 1 else "mixed")
    return {"depth": arch.depth, "narrowest": arch.narrowest, "activation": mix}


def architecture_table(rows: Sequence[Row]) -> list[Row]:
    """Rows with an ``architecture`` string, extended by :func:`describe`."""
    return [
        {**row, **describe(Architecture.parse(row["architecture"]))} for row in rows
    ]


def filter_table(
    table: Sequence[Row],
    depth: int | None = None,
    narrowest: int | None = None,
    activation: str | None = None,
) -> list[Row]:
    """Rows of :func:`architecture_table` that match every filter given."""
    return [
        row
        for row in table
        if (depth is None or row["depth"] == depth)
        and (narrowest is None or row["narrowest"] == narrowest)
        and (activation is None or row["activation"] == activation)
    ]


def architecture_trends(
    children: Sequence[Row], space: SearchSpace, window: int = 25
) -> dict[str, np.ndarray]:
    """How the sampled architectures change over a search, ``window`` episodes
    at a time.

    Returns
    -------
    dict of ndarray
        ``episode`` (num_bins,): last episode of each bin; ``depth``
        (num_bins, max_layers + 1): share of architectures of each depth;
        ``units`` (num_bins, len(space.units)) and ``activations``
        (num_bins, len(space.activations)): share of hidden layers with each
        unit count and activation; ``val_accuracy`` (num_bins,): mean accuracy.
    """
    last = max(int(r["episode"]) for r in children)
    edges = list(range(window, last + window, window))
    bins: list[list[Architecture]] = [[] for _ in edges]
    accuracy: list[list[float]] = [[] for _ in edges]
    for row in children:
        k = (int(row["episode"]) - 1) // window
        bins[k].append(Architecture.parse(row["architecture"]))
        accuracy[k].append(float(row["val_accuracy"]))

    depth = np.zeros((len(edges), space.max_layers + 1))
    units = np.zeros((len(edges), len(space.units)))
    activations = np.zeros((len(edges), len(space.activations)))
    for k, archs in enumerate(bins):
        for arch in archs:
            depth[k, arch.depth] += 1
            for layer in arch.layers:
                units[k, space.units.index(layer.units)] += 1
                activations[k, space.activations.index(layer.activation)] += 1
    return {
        "episode": np.minimum(np.asarray(edges), last),
        "depth": _shares(depth),
        "units": _shares(units),
        "activations": _shares(activations),
        "val_accuracy": np.asarray([np.mean(a) for a in accuracy]),
    }


def _shares(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return np.asarray(shares)


# peaks of the accuracy histogram


@dataclass(frozen=True)
class Peak:
    """One mode of the accuracy density and the interval that belongs to it.

    ``low`` and ``high`` are the density minima on either side (-inf and inf
    at the ends); ``share`` is the fraction of all accuracies in [low, high).
    """

    location: float
    density: float
    low: float
    high: float
    share: float


def kernel_density(
    values: Sequence[float] | np.ndarray,
    grid: np.ndarray,
    bandwidth: float | str = "scott",
) -> np.ndarray:
    """Gaussian kernel density estimate (SciPy) of ``values`` on ``grid``."""
    from scipy.stats import gaussian_kde

    kde = gaussian_kde(np.asarray(values, dtype=float), bw_method=bandwidth)
    return np.asarray(kde(grid))


def find_peaks(
    accuracies: Sequence[float],
    bandwidth: float | str = "scott",
    min_prominence: float = 0.02,
    grid_size: int = 1001,
) -> list[Peak]:
    """Modes of the kernel density of ``accuracies``, lowest first.

    Parameters
    ----------
    accuracies : sequence of float
    bandwidth : float or {"scott", "silverman"}, default "scott"
        As ``bw_method`` of :class:`scipy.stats.gaussian_kde`: a rule, or a
        number that multiplies the standard deviation of ``accuracies``.
        Scott's rule is the one seaborn's curve uses.
    min_prominence : float, default 0.02
        A mode must rise this share of the highest density above its
        surroundings, so wiggles of the estimate do not count as peaks.
    grid_size : int, default 1001
        Points between the smallest and the largest accuracy.
    """
    from scipy.signal import find_peaks as scipy_peaks

    values = np.asarray(accuracies, dtype=float)
    pad = 0.05 * max(float(np.ptp(values)), 1e-3)
    grid = np.linspace(values.min() - pad, values.max() + pad, grid_size)
    density = kernel_density(values, grid, bandwidth)
    tops, _ = scipy_peaks(density, prominence=min_prominence * density.max())
    bounds = [-math.inf]
    for left, right in zip(tops[:-1], tops[1:], strict=True):
        valley = left + int(np.argmin(density[left : right + 1]))
        bounds.append(float(grid[valley]))
    bounds.append(math.inf)

    peaks = []
    for i, top in enumerate(tops):
        low, high = bounds[i], bounds[i + 1]
        share = float(np.mean((values >= low) & (values < high)))
        peaks.append(Peak(float(grid[top]), float(density[top]), low, high, share))
    return peaks


def describe_peaks(table: Sequence[Row], peaks: Sequence[Peak]) -> list[Row]:
    """What lies under each peak: share, typical depth, narrowest layer and
    activations.

    Parameters
    ----------
    table : rows of :func:`architecture_table` with ``val_accuracy``
    peaks : from :func:`find_peaks`

    Returns
    -------
    list of dict
        One row per peak: ``peak`` (location), ``low``, ``high``, ``count``,
        ``share``, ``mean_depth``, ``share_bottleneck_1`` (narrowest layer of one
        unit), ``narrowest`` (the most common narrowest layer and its share),
        ``share_<mix>`` for each of :data:`ACTIVATION_MIXES`, ``share_depth_<d>``
        and ``share_narrowest_<u>`` for each depth and narrowest layer present.
    """
    out = []
    for peak in peaks:
        rows = [r for r in table if peak.low <= r["val_accuracy"] < peak.high]
        n = max(len(rows), 1)
        narrowest = [r["narrowest"] for r in rows if r["narrowest"] is not None]
        common = max(set(narrowest), key=narrowest.count) if narrowest else None
        row: Row = {
            "peak": round(peak.location, 3),
            "low": peak.low,
            "high": peak.high,
            "count": len(rows),
            "share": peak.share,
            "mean_depth": float(np.mean([r["depth"] for r in rows])) if rows else 0.0,
            "share_bottleneck_1": sum(v == 1 for v in narrowest) / n,
            "narrowest": common,
            "share_narrowest": narrowest.count(common) / n if rows else 0.0,
        }
        for mix in ACTIVATION_MIXES:
            row[f"share_{mix}"] = sum(r["activation"] == mix for r in rows) / n
        for d in sorted({r["depth"] for r in table}):
            row[f"share_depth_{d}"] = sum(r["depth"] == d for r in rows) / n
        for u in sorted({r["narrowest"] for r in table if r["narrowest"] is not None}):
            row[f"share_narrowest_{u}"] = narrowest.count(u) / n
        out.append(row)
    return out


# one run of a strategy, as a picklable task


@dataclass(frozen=True)
class RunTask:
    """One search run: a strategy, its seed and settings.

    ``seed`` seeds the strategy and every child's initial weights. The run
    stops after ``num_trained`` trained children (None: after all of
    ``search.episodes`` episodes), whichever comes first.
    """

    strategy: str
    seed: int
    data: Dataset
    space: SearchSpace = field(default_factory=SearchSpace)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    num_trained: int | None = None
    label: str = ""
    processes: int = 1

    def __post_init__(self) -> None:
        if self.strategy not in ("reinforce", "random"):
            raise ValueError(
                f"strategy must be 'reinforce' or 'random', got {self.strategy!r}"
            )
        if not self.label:
            object.__setattr__(self, "label", self.strategy)


@dataclass
class RunRecord:
    """What one run produced, small enough to store.

    ``curve_x``, ``curve_y``: change points of best-so-far validation accuracy
    against children trained. ``final_accuracy``: mean validation accuracy of
    the children sampled in the last 10 episodes (what the policy settled on).
    """

    label: str
    strategy: str
    seed: int
    episodes: int
    children_sampled: int
    children_trained: int
    best_architecture: str
    best_val_accuracy: float
    best_reward: float
    final_accuracy: float
    seconds: float
    curve_x: list[int]
    curve_y: list[float]

    def summary(self) -> Row:
        """The record without its curve (one CSV row)."""
        row = dataclasses.asdict(self)
        del row["curve_x"], row["curve_y"]
        return row


def run_task(task: RunTask, progress: bool = False) -> RunRecord:
    """Run one :class:`RunTask` and keep what the comparison needs."""
    inner = ChildEvaluator(task.data, task.train, task.seed, processes=task.processes)
    evaluator = CountingEvaluator(inner)
    strategy: Strategy
    if task.strategy == "reinforce":
        strategy = Search(task.space, evaluator, task.search, seed=task.seed)
    else:
        strategy = RandomSearch(
            task.space,
            evaluator,
            task.search.episodes,
            task.search.batch_size,
            seed=task.seed,
        )
        # random proposals do not depend on rewards: train them in one request
        start = time.perf_counter()
        evaluator.prefetch(
            planned_random_architectures(
                task.space,
                task.num_trained or 10**9,
                task.search.episodes,
                task.search.batch_size,
                task.seed,
            )
        )
        strategy.seconds += time.perf_counter() - start
    run_until_trained(strategy, task.num_trained, progress)
    return _record(task, strategy)


def _record(task: RunTask, strategy: Strategy) -> RunRecord:
    x, y = change_points(*best_so_far(strategy.children))
    last = strategy.episode - 10
    final = [r["val_accuracy"] for r in strategy.children if r["episode"] > last]
    best = strategy.best
    assert best is not None
    return RunRecord(
        task.label,
        task.strategy,
        task.seed,
        strategy.episode,
        strategy.children_sampled,
        strategy.children_trained,
        str(best.architecture),
        best.val_accuracy,
        best.reward,
        float(np.mean(final)),
        strategy.seconds,
        [int(v) for v in x],
        [float(v) for v in y],
    )


def run_tasks(tasks: Sequence[RunTask], processes: int = 1) -> list[RunRecord]:
    """Run tasks, in ``processes`` worker processes (results in task order)."""
    return parallel_map(run_task, list(tasks), processes)


# retraining with fresh seeds


def retrain(
    archs: Sequence[Architecture],
    data: Dataset,
    seeds: Sequence[int],
    config: TrainConfig | None = None,
    processes: int = 1,
) -> list[Row]:
    """Train each architecture again from fresh initial weights, once per seed.

    Best-so-far accuracy favours children whose initial weights were lucky;
    the mean over fresh seeds measures the architecture instead.

    Returns
    -------
    list of dict
        One row per (distinct architecture, seed): ``architecture``, ``seed``,
        ``val_accuracy``, ``status``.
    """
    unique = list(dict.fromkeys(archs))
    rows = []
    for seed in seeds:
        evaluator = ChildEvaluator(data, config, seed, processes=processes)
        for arch, result in zip(unique, evaluator.evaluate(unique), strict=True):
            rows.append(
                {
                    "architecture": str(arch),
                    "seed": seed,
                    "val_accuracy": result.val_accuracy,
                    "status": result.status,
                }
            )
    return rows


def retrained_means(rows: Sequence[Row]) -> dict[str, float]:
    """Mean fresh-seed validation accuracy per architecture string."""
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(row["architecture"], []).append(float(row["val_accuracy"]))
    return {arch: float(np.mean(values)) for arch, values in groups.items()}


# the comparison of strategies, and the ablation


@dataclass(frozen=True)
class ComparisonSettings:
    """Budget and seeds of the REINFORCE-versus-random comparison.

    Parameters
    ----------
    seeds : tuple of int, default (0, 1, 2, 3, 4)
        One run per strategy and seed; the seed also fixes children's weights.
    num_trained : int, default 1000
        Children trained per run: the equal budget.
    max_episodes : int, default 300
        Episodes at most, in case a converged controller trains new children
        too rarely to spend the budget.
    batch_size : int, default 15
    fresh_seeds : tuple of int, default (1000, ..., 1004)
        Child seeds for retraining each run's best architecture.
    train : TrainConfig
    search : SearchConfig
        Controller settings (its ``episodes`` and ``batch_size`` are replaced).
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    num_trained: int = 1000
    max_episodes: int = 300
    batch_size: int = 15
    fresh_seeds: tuple[int, ...] = (1000, 1001, 1002, 1003, 1004)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def tasks(self, data: Dataset) -> list[RunTask]:
        search = dataclasses.replace(
            self.search, episodes=self.max_episodes, batch_size=self.batch_size
        )
        return [
            RunTask(
                name,
                seed,
                data,
                train=self.train,
                search=search,
                num_trained=self.num_trained,
            )
            for seed in self.seeds
            for name in ("reinforce", "random")
        ]


@dataclass
class Comparison:
    """Runs of several strategies (or variants) and the fresh-seed retraining of
    each run's best architecture."""

    runs: list[RunRecord]
    retrained: list[Row]
    settings: Row = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(run.label for run in self.runs))

    def curves(self, grid: np.ndarray) -> dict[str, np.ndarray]:
        """Best-so-far accuracy on ``grid`` per label: shape (num_seeds, len(grid))."""
        return {
            label: np.stack(
                [
                    curve_on_grid(np.asarray(r.curve_x), np.asarray(r.curve_y), grid)
                    for r in self.runs
                    if r.label == label
                ]
            )
            for label in self.labels
        }

    def reach(self, threshold: float) -> list[Row]:
        """Per run: children trained when best-so-far first reached ``threshold``."""
        return [
            {
                "label": r.label,
                "seed": r.seed,
                "children": first_reach(
                    np.asarray(r.curve_x), np.asarray(r.curve_y), threshold
                ),
            }
            for r in self.runs
        ]

    def table(self) -> list[Row]:
        """Per run: its record and the fresh-seed mean of its best architecture."""
        means = retrained_means(self.retrained)
        return [
            {**r.summary(), "retrained_accuracy": means.get(r.best_architecture)}
            for r in self.runs
        ]

    def differences(self, key: str, first: str, second: str) -> list[float]:
        """Per seed run by both labels: ``key`` of ``first`` minus that of
        ``second`` (a paired comparison: both runs share the seed)."""
        values: dict[tuple[str, int], Any] = {
            (row["label"], row["seed"]): row[key] for row in self.table()
        }
        seeds = sorted({seed for label, seed in values if label == first})
        return [
            float(values[(first, s)] - values[(second, s)])
            for s in seeds
            if (second, s) in values
        ]

    def summary(self) -> list[Row]:
        """Per label: mean and standard error over seeds of the headline numbers."""
        table = self.table()
        out = []
        for label in self.labels:
            rows = [r for r in table if r["label"] == label]
            row: Row = {"label": label, "runs": len(rows)}
            for key in (
                "best_val_accuracy",
                "retrained_accuracy",
                "final_accuracy",
                "children_trained",
                "episodes",
            ):
                values = [r[key] for r in rows if r[key] is not None]
                row[key], row[key + "_sem"] = mean_and_sem(values)
            out.append(row)
        return out


def run_comparison(
    data: Dataset, settings: ComparisonSettings, processes: int = 1
) -> Comparison:
    """Run both strategies for every seed, then retrain every run's best
    architecture with the fresh seeds."""
    runs = run_tasks(settings.tasks(data), processes)
    best = [Architecture.parse(r.best_architecture) for r in runs]
    rows = retrain(best, data, settings.fresh_seeds, settings.train, processes)
    info = {
        "seeds": list(settings.seeds),
        "num_trained": settings.num_trained,
        "max_episodes": settings.max_episodes,
        "batch_size": settings.batch_size,
        "fresh_seeds": list(settings.fresh_seeds),
    }
    return Comparison(runs, rows, info)


ABLATION_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no baseline": {"use_baseline": False},
    "entropy 0": {"entropy_weight": 0.0},
    "entropy 0.1": {"entropy_weight": 0.1},
    "exponent 1": {"reward_exponent": 1.0},
}
"""Changes from the default settings; ``reward_exponent`` goes to TrainConfig,
the rest to SearchConfig."""


def run_ablation(
    data: Dataset,
    seeds: Sequence[int] = (0, 1, 2),
    episodes: int = 40,
    batch_size: int = 15,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    train: TrainConfig | None = None,
    fresh_seeds: Sequence[int] = (1000, 1001, 1002),
    processes: int = 1,
) -> Comparison:
    """REINFORCE with one setting changed at a time, ``episodes`` episodes each."""
    variants = ABLATION_VARIANTS if variants is None else variants
    train = train or TrainConfig()
    tasks = []
    for name, changes in variants.items():
        search_changes = {k: v for k, v in changes.items() if k != "reward_exponent"}
        search = SearchConfig(
            episodes=episodes, batch_size=batch_size, **search_changes
        )
        exponent = changes.get("reward_exponent", train.reward_exponent)
        variant_train = dataclasses.replace(train, reward_exponent=exponent)
        tasks += [
            RunTask(
                "reinforce", s, data, train=variant_train, search=search, label=name
            )
            for s in seeds
        ]
    runs = run_tasks(tasks, processes)
    best = [Architecture.parse(r.best_architecture) for r in runs]
    rows = retrain(best, data, fresh_seeds, train, processes)
    info = {
        "seeds": list(seeds),
        "episodes": episodes,
        "batch_size": batch_size,
        "fresh_seeds": list(fresh_seeds),
        "variants": {name: dict(changes) for name, changes in variants.items()},
    }
    return Comparison(runs, rows, info)


# storing and loading comparisons

BEST_WEIGHTS = "best_weights.json"
RUNS = "runs.csv"
CURVES = "curves.csv"
RETRAINED = "retrained.csv"
SETTINGS = "settings.json"


def save_comparison(folder: str | Path, comparison: Comparison) -> None:
    """Write a comparison as three CSV files and a JSON file in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs = [r.summary() for r in comparison.runs]
    write_csv(folder / RUNS, runs, list(runs[0]))
    curves = [
        {"label": r.label, "seed": r.seed, "children_trained": x, "best": y}
        for r in comparison.runs
        for x, y in zip(r.curve_x, r.curve_y, strict=True)
    ]
    write_csv(folder / CURVES, curves, ["label", "seed", "children_trained", "best"])
    columns = ["architecture", "seed", "val_accuracy", "status"]
    write_csv(folder / RETRAINED, comparison.retrained, columns)
    write_json(folder / SETTINGS, comparison.settings)


def load_comparison(folder: str | Path) -> Comparison:
    """Inverse of :func:`save_comparison`."""
    folder = Path(folder)
    curves: dict[Hashable, tuple[list[int], list[float]]] = {}
    for row in read_csv(folder / CURVES):
        xs, ys = curves.setdefault((str(row["label"]), row["seed"]), ([], []))
        xs.append(int(row["children_trained"]))
        ys.append(float(row["best"]))
    runs = []
    for row in read_csv(folder / RUNS):
        row["label"], row["best_architecture"] = (
            str(row["label"]),
            str(row["best_architecture"]),
        )
        x, y = curves[(row["label"], row["seed"])]
        runs.append(RunRecord(**row, curve_x=x, curve_y=y))
    retrained = read_csv(folder / RETRAINED)
    for row in retrained:
        row["architecture"] = str(row["architecture"])
    return Comparison(runs, retrained, read_json(folder / SETTINGS))


# the full experiments behind the stored results


def load_run(folder: str | Path) -> tuple[dict[str, Any], list[Row], list[Row]]:
    """A run folder's summary, history (empty if none) and per-child record."""
    folder = Path(folder)
    summary = read_json(folder / "summary.json")
    history = (
        read_csv(folder / "history.csv") if (folder / "history.csv").exists() else []
    )
    children = read_csv(folder / "children.csv")
    for row in children:
        row["architecture"] = str(row["architecture"])
    return summary, history, children


def prune_run_folder(folder: Path) -> None:
    """Keep only the CSV and JSON files of a run folder (small, text only)."""
    for path in folder.iterdir():
        if path.suffix not in (".csv", ".json"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def save_weights(path: str | Path, result: ChildResult) -> None:
    """A child's architecture and weights as JSON (a few hundred numbers)."""
    assert result.weights is not None
    weights = [[W.tolist(), b.tolist()] for W, b in result.weights]
    write_json(path, {"architecture": str(result.architecture), "weights": weights})


def load_weights(path: str | Path) -> tuple[Architecture, Any]:
    """Inverse of :func:`save_weights`: the architecture and its ``Weights``."""
    data = read_json(path)
    weights = tuple(
        (np.asarray(W, dtype=np.float32), np.asarray(b, dtype=np.float32))
        for W, b in data["weights"]
    )
    return Architecture.parse(data["architecture"]), weights


def run_full_search(
    out: str | Path,
    seed: int = 0,
    config: SearchConfig | None = None,
    train: TrainConfig | None = None,
    processes: int = 1,
    progress: bool = True,
    callback: Callable[[Strategy], None] | None = None,
) -> dict[str, Any]:
    """The report's search (500 episodes of 15 by default) on two moons; writes
    a pruned run folder with the best child's weights and returns its summary."""
    start = time.perf_counter()
    # the weights file is ours: prepare_folder only ever deletes run files
    (Path(out) / BEST_WEIGHTS).unlink(missing_ok=True)
    out = prepare_folder(out, overwrite=True)
    data = make_two_moons(seed=seed)
    evaluator = ChildEvaluator(data, train, seed, processes=processes)
    search = Search(SearchSpace(), evaluator, config, seed=seed)
    search.run(progress=progress, callback=callback)
    extra = {"seed": seed, "dataset": "moons", "space": SearchSpace().to_dict()}
    summary = finish_search(out, search, data, extra)
    assert search.best is not None
    save_weights(out / BEST_WEIGHTS, search.best)
    prune_run_folder(out)
    summary["wall_seconds"] = time.perf_counter() - start
    write_json(out / "summary.json", summary)
    return summary


def run_full_random(
    out: str | Path, num: int = 5000, seed: int = 0, processes: int = 2
) -> dict[str, Any]:
    """Train ``num`` architectures from the default sampler (depth uniform);
    write a pruned run folder and return its summary."""
    out = prepare_folder(out, overwrite=True)
    data = make_two_moons(seed=seed)
    evaluator = ChildEvaluator(data, seed=seed, processes=processes)
    start = time.perf_counter()
    results = evaluator.evaluate(SearchSpace().sample(num, seed))
    seconds = time.perf_counter() - start
    extra = {"seed": seed, "dataset": "moons", "processes": processes}
    summary = finish_random(out, results, evaluator.num_trained, seconds, extra)
    prune_run_folder(out)
    return summary


def run_full_comparison(
    out: str | Path,
    settings: ComparisonSettings | None = None,
    ablation_episodes: int = 40,
    processes: int = 2,
) -> dict[str, Any]:
    """The comparison (``out/comparison``) and the ablation (``out/ablation``)
    on two moons (data seed 0); returns their wall times."""
    out = Path(out)
    data = make_two_moons(seed=0)
    start = time.perf_counter()
    comparison = run_comparison(data, settings or ComparisonSettings(), processes)
    comparison.settings["wall_seconds"] = time.perf_counter() - start
    save_comparison(out / "comparison", comparison)

    start = time.perf_counter()
    ablation = run_ablation(data, episodes=ablation_episodes, processes=processes)
    ablation.settings["wall_seconds"] = time.perf_counter() - start
    save_comparison(out / "ablation", ablation)
    return {
        "comparison_seconds": comparison.settings["wall_seconds"],
        "ablation_seconds": ablation.settings["wall_seconds"],
    }


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m automl_lib.experiments search|random|compare [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m automl_lib.experiments")
    parser.add_argument("experiment", choices=["search", "random", "compare"])
    parser.add_argument("--out", default=None, help="default: notebooks/results/")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    import torch

    torch.set_num_threads(1)
    out = Path(args.out) if args.out else results_dir()
    if args.experiment == "search":
        summary = run_full_search(out / "search", processes=args.processes)
    elif args.experiment == "random":
        summary = run_full_random(out / "random", processes=args.processes)
    else:
        summary = run_full_comparison(out, processes=args.processes)
    logger.info("done: %s", summary)


if __name__ == "__main__":
    main()
