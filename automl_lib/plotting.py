"""Figures: data splits, training curves, decision regions, controller
distributions, reward curves and accuracy histograms.

Every function draws on a Matplotlib ``Axes`` (a new one if none is given) and
returns it, so notebooks can arrange figures and the command line can save them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from .child import ChildResult, Weights, build_child
from .data import Dataset
from .search_space import Architecture, SearchSpace


def _axes(ax: Axes | None, figsize: tuple[float, float] = (6.0, 4.0)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def moving_average(values: Sequence[float], window: int = 20) -> np.ndarray:
    """Mean of the last ``window`` values at each point (shorter at the start)."""
    array = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(array, 0, 0.0))
    index = np.arange(1, len(array) + 1)
    start = np.maximum(index - window, 0)
    return np.asarray((sums[index] - sums[start]) / (index - start))


def _plot_smoothed(
    ax: Axes,
    history: Sequence[dict[str, Any]],
    column: str,
    label: str,
    color: str,
    window: int,
) -> None:
    """One history column per episode, faint, with its moving average on top."""
    episodes = [row["episode"] for row in history]
    values = [row[column] for row in history]
    ax.plot(episodes, values, color=color, alpha=0.35, lw=1, label=label)
    ax.plot(
        episodes,
        moving_average(values, window),
        color=color,
        lw=2,
        label=f"{window}-episode moving average",
    )


def plot_rewards(
    history: Sequence[dict[str, Any]],
    window: int = 20,
    ax: Axes | None = None,
    show_baseline: bool = True,
) -> Axes:
    """Mean reward per episode with its ``window``-episode moving average."""
    ax = _axes(ax)
    episodes = [row["episode"] for row in history]
    _plot_smoothed(ax, history, "mean_reward", "mean reward", "tab:blue", window)
    if show_baseline:
        baseline = [row["baseline"] for row in history]
        ax.plot(episodes, baseline, color="tab:orange", lw=1, ls="--", label="baseline")
    ax.set_xlabel("episode")
    ax.set_ylabel("reward")
    ax.legend(loc="lower right")
    return ax


def plot_decision_regions(
    arch: Architecture,
    weights: Weights,
    X: np.ndarray,
    y: np.ndarray,
    ax: Axes | None = None,
    resolution: int = 200,
    mark_errors: bool = True,
    title: str | None = None,
) -> Axes:
    """Colour the plane by a trained child's predicted class; overlay points.

    Only for two features. Misclassified points are circled in red.
    """
    if X.shape[1] != 2:
        raise ValueError(f"decision regions need 2 features, got {X.shape[1]}")
    import torch

    ax = _axes(ax, (5.0, 4.0))
    dtype = torch.float64 if weights[0][0].dtype == np.float64 else torch.float32
    model = build_child(arch, 2, weights[-1][0].shape[0], dtype=dtype, weights=weights)
    pad = 0.5
    x0 = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, resolution)
    x1 = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, resolution)
    grid = np.stack(np.meshgrid(x0, x1), axis=-1).reshape(-1, 2)
    with torch.no_grad():
        grid_pred = model(torch.as_tensor(grid, dtype=dtype)).argmax(1).numpy()
        pred = model(torch.as_tensor(X, dtype=dtype)).argmax(1).numpy()
    ax.contourf(
        x0, x1, grid_pred.reshape(resolution, resolution), alpha=0.3, cmap="coolwarm"
    )
    ax.scatter(
        X[:, 0], X[:, 1], c=y, cmap="coolwarm", s=10, edgecolors="k", linewidths=0.2
    )
    if mark_errors:
        wrong = pred != y
        ax.scatter(
            X[wrong, 0],
            X[wrong, 1],
            facecolors="none",
            edgecolors="red",
            s=40,
            linewidths=1.2,
            label=f"misclassified ({int(wrong.sum())})",
        )
        if wrong.any():
            ax.legend(loc="lower left", fontsize="small")
    accuracy = float(np.mean(pred == y))
    ax.set_title(title if title is not None else f"{arch}  (accuracy {accuracy:.3f})")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def plot_accuracy_histogram(
    accuracies: Sequence[float],
    ax: Axes | None = None,
    bins: int = 60,
    label: str | None = None,
    kde: bool = True,
) -> Axes:
    """Histogram of validation accuracies with a Gaussian kernel density curve."""
    import seaborn as sns

    ax = _axes(ax)
    sns.histplot(
        np.asarray(accuracies), bins=bins, kde=kde, stat="density", ax=ax, label=label
    )
    ax.set_xlabel("validation accuracy")
    ax.set_ylabel("density")
    return ax


def plot_splits(
    data: Dataset, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Scatter a two-feature data set, one marker per split, one colour per class.

    Train points are dots, validation points triangles and test points crosses.
    The test points are drawn from :meth:`Dataset.all_points`, which is for
    figures; nothing here scores a model on them.
    """
    if data.num_features != 2:
        raise ValueError(f"plot_splits needs 2 features, got {data.num_features}")
    from matplotlib.lines import Line2D

    ax = _axes(ax, (5.0, 4.0))
    X, y = data.all_points()
    bounds = np.cumsum([0, *data.sizes])
    markers = (("train", "o", 12), ("validation", "^", 24), ("test", "x", 30))
    cmap = plt.get_cmap("coolwarm")
    top = max(data.num_classes - 1, 1)
    handles = []
    for (name, marker, size), start, stop in zip(
        markers, bounds[:-1], bounds[1:], strict=True
    ):
        ax.scatter(
            X[start:stop, 0],
            X[start:stop, 1],
            c=y[start:stop],
            cmap=cmap,
            vmin=0,
            vmax=top,
            marker=marker,
            s=size,
            linewidths=1.0 if marker == "x" else 0.2,
            edgecolors=None if marker == "x" else "k",
        )
        label = f"{name} ({stop - start})"
        handles.append(Line2D([], [], marker=marker, ls="", color="0.3", label=label))
    for k in range(data.num_classes):
        colour = cmap(k / top)
        handles.append(
            Line2D([], [], marker="s", ls="", color=colour, label=f"class {k}")
        )
    ax.legend(handles=handles, loc="lower left", fontsize="x-small")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_training_curve(
    result: ChildResult, ax: Axes | None = None, last: int = 5
) -> Axes:
    """Training loss and validation accuracy per epoch of one child.

    The best epoch (whose weights are kept) is marked with a dashed line and
    the last ``last`` epochs trained are shaded: with early stopping they come
    after the best epoch. Returns the accuracy axes; the loss sits on a twin.

    Raises
    ------
    ValueError
        If ``result`` carries no history (train with ``keep_history=True``).
    """
    if result.history is None:
        raise ValueError("result has no history; train with keep_history=True")
    ax = _axes(ax)
    accuracies = result.history["val_accuracy"]
    epochs = np.arange(1, len(accuracies) + 1)
    ax.plot(epochs, accuracies, color="tab:blue", lw=1.5, label="validation accuracy")
    ax.axvline(
        result.best_epoch,
        color="tab:green",
        ls="--",
        lw=1,
        label=f"best epoch {result.best_epoch} ({result.val_accuracy:.3f})",
    )
    start = max(len(accuracies) - last, 0) + 0.5
    ax.axvspan(start, len(accuracies) + 0.5, color="tab:orange", alpha=0.25)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    loss_ax = ax.twinx()
    loss_ax.plot(epochs, result.history["loss"], color="tab:red", lw=1, alpha=0.7)
    loss_ax.set_ylabel("training loss", color="tab:red")
    ax.legend(loc="center right", fontsize="small")
    ax.set_title(f"{result.architecture}: last {last} epochs shaded")
    return ax


def plot_step_distributions(
    distributions: Sequence[tuple[list[str], list[float]]],
    token_names: Sequence[str],
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Heat map of a controller's choice probabilities, one column per step.

    ``distributions`` is what :meth:`Controller.step_distributions` returns;
    tokens a step may not choose are left blank.
    """
    rows = [name for name in token_names if name != "start"]
    table = np.full((len(rows), len(distributions)), np.nan)
    for step, (names, probs) in enumerate(distributions):
        for name, prob in zip(names, probs, strict=True):
            table[rows.index(name), step] = prob
    ax = _axes(ax, (1.0 + 0.7 * len(distributions), 3.5))
    steps = range(len(distributions))
    ax.imshow(table, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for (row, step), prob in np.ndenumerate(table):
        if np.isfinite(prob):
            colour = "black" if prob > 0.5 else "white"
            ax.text(step, row, f"{prob:.2f}", ha="center", va="center", color=colour)
    ax.set_yticks(range(len(rows)), rows)
    labels = [f"{'units' if s % 2 == 0 else 'act.'} {s // 2 + 1}" for s in steps]
    ax.set_xticks(steps, labels)
    ax.set_xlabel("step (decision of layer)")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_depth_shares(
    samples: dict[str, Sequence[Architecture]],
    max_layers: int,
    ax: Axes | None = None,
) -> Axes:
    """Grouped bars: share of each depth among the architectures of each sample."""
    ax = _axes(ax)
    depths = np.arange(0, max_layers + 1)
    width = 0.8 / max(len(samples), 1)
    for i, (name, archs) in enumerate(samples.items()):
        counts = np.bincount([a.depth for a in archs], minlength=max_layers + 1)
        shares = counts / max(len(archs), 1)
        ax.bar(depths + (i - (len(samples) - 1) / 2) * width, shares, width, label=name)
    ax.set_xticks(depths)
    ax.set_xlabel("depth (hidden layers)")
    ax.set_ylabel("share of architectures")
    ax.legend()
    return ax


def plot_curves(
    curves: dict[str, Sequence[float]],
    ax: Axes | None = None,
    xlabel: str = "episode",
    ylabel: str = "value",
    window: int = 1,
    start: int = 1,
) -> Axes:
    """One line per named curve, optionally smoothed by :func:`moving_average`.

    The first value of every curve is drawn at x = ``start`` (default 1: the
    first episode; 0 suits curves that begin with the state before training).
    """
    ax = _axes(ax)
    for name, values in curves.items():
        x = np.arange(start, start + len(values))
        smooth = moving_average(values, window) if window > 1 else np.asarray(values)
        ax.plot(x, smooth, lw=1.5, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    return ax


# notebooks 06-08: a search over time, accuracy peaks, strategy comparisons ----


def plot_entropy(
    history: Sequence[dict[str, Any]], window: int = 20, ax: Axes | None = None
) -> Axes:
    """Controller entropy per episode with its ``window``-episode moving average.

    The entropy is summed over the decisions of an architecture and averaged
    over the batch (the ``entropy`` column of a search history).
    """
    ax = _axes(ax)
    _plot_smoothed(ax, history, "entropy", "entropy", "tab:green", window)
    ax.set_xlabel("episode")
    ax.set_ylabel("entropy (nats per architecture)")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def plot_search_overview(
    history: Sequence[dict[str, Any]],
    window: int = 20,
    axes: Sequence[Axes] | None = None,
) -> Sequence[Axes]:
    """Reward with moving average and baseline, and entropy, side by side."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11.0, 3.6))
    plot_rewards(history, window, ax=axes[0])
    plot_entropy(history, window, ax=axes[1])
    return axes


def plot_architecture_trends(
    trends: dict[str, np.ndarray],
    space: SearchSpace,
    axes: Sequence[Axes] | None = None,
) -> Sequence[Axes]:
    """Stacked shares over episodes: depth of the sampled architectures, and
    unit count and activation of their hidden layers.

    ``trends`` is what :func:`automl_lib.experiments.architecture_trends` returns.
    """
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(14.0, 3.6), sharex=True)
    episodes = trends["episode"]
    panels = (
        ("depth", [str(d) for d in range(space.max_layers + 1)], "depth", "viridis"),
        ("units", [str(u) for u in space.units], "units per layer", "magma"),
        ("activations", list(space.activations), "activation", "Set2"),
    )
    for ax, (key, names, title, cmap) in zip(axes, panels, strict=True):
        colours = plt.get_cmap(cmap)(np.linspace(0.1, 0.9, len(names)))
        ax.stackplot(episodes, trends[key].T, labels=names, colors=colours)
        ax.set_ylim(0, 1)
        ax.set_xlabel("episode")
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize="x-small", ncol=2, framealpha=0.8)
    axes[0].set_ylabel("share")
    return axes


def histogram_edges(values: Sequence[float], bins: int = 60) -> list[float]:
    """About ``bins`` bin edges for ``values``, aligned to their grid if they
    have one: accuracies on 200 points are multiples of 0.005, and bins that
    do not hold the same number of grid values draw a comb instead of a shape.
    """
    array = np.asarray(values, dtype=float)
    lo, hi = float(array.min()), float(array.max())
    gaps = np.diff(np.unique(array))
    step = float(gaps.min()) if len(gaps) else 1.0
    if hi == lo or (hi - lo) / step > 4 * bins:
        edges = np.linspace(lo, hi + (hi == lo), bins + 1)
    else:
        width = step * max(1, round((hi - lo) / step / bins))
        edges = np.arange(lo - step / 2, hi + width, width)
    return [float(edge) for edge in edges]


def plot_peaks(
    accuracies: Sequence[float],
    peaks: Sequence[Any],
    ax: Axes | None = None,
    overlay: Sequence[float] | None = None,
    overlay_label: str = "controller's samples",
    bins: int = 60,
) -> Axes:
    """Accuracy histogram with its kernel density; each peak's interval shaded
    and labelled with its share.

    Parameters
    ----------
    accuracies : sequence of float
    peaks : sequence of Peak
        From :func:`automl_lib.experiments.find_peaks` (``location``, ``low``,
        ``high``, ``share``).
    overlay : sequence of float, optional
        Other accuracies (say, a trained controller's samples), drawn as the
        share of their own count on a second y axis.
    bins : int, default 60
        About this many bins, see :func:`histogram_edges`.
    """
    import seaborn as sns

    ax = _axes(ax)
    edges = histogram_edges(accuracies, bins)
    sns.histplot(np.asarray(accuracies), bins=edges, kde=True, stat="density", ax=ax)
    ax.set_xlabel("validation accuracy")
    ax.set_ylabel("density")
    lo, hi = edges[0], edges[-1]
    top = ax.get_ylim()[1]
    for i, peak in enumerate(peaks):
        left, right = max(peak.low, lo), min(peak.high, hi)
        ax.axvspan(left, right, color=f"C{i + 1}", alpha=0.12)
        ax.text(
            peak.location,
            0.92 * top,
            f"{100 * peak.share:.1f}%",
            ha="center",
            color=f"C{i + 1}",
            fontweight="bold",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
            zorder=5,
        )
    if overlay is not None and len(overlay):
        twin = ax.twinx()
        weights = np.full(len(overlay), 1.0 / len(overlay))
        twin.hist(
            np.clip(overlay, lo, hi),
            bins=edges,
            weights=weights,
            histtype="step",
            color="black",
            lw=1.5,
            label=overlay_label,
        )
        twin.set_ylabel(f"share of {overlay_label}")
        twin.legend(loc="center", fontsize="small")
    return ax


def plot_best_so_far(
    grid: np.ndarray,
    curves: dict[str, np.ndarray],
    ax: Axes | None = None,
    threshold: float | None = None,
) -> Axes:
    """Best validation accuracy so far against children trained.

    ``curves`` maps a strategy to an array of shape (num_seeds, len(grid)); the
    line is the mean over seeds, the band runs from the lowest to the highest
    seed. ``threshold`` draws a horizontal reference line.
    """
    ax = _axes(ax)
    for i, (name, values) in enumerate(curves.items()):
        ax.plot(grid, np.nanmean(values, axis=0), color=f"C{i}", lw=2, label=name)
        ax.fill_between(
            grid,
            np.nanmin(values, axis=0),
            np.nanmax(values, axis=0),
            color=f"C{i}",
            alpha=0.2,
        )
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls="--", lw=1, label="top 1% threshold")
    ax.set_xlabel("children trained")
    ax.set_ylabel("best validation accuracy so far")
    ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_seed_comparison(
    rows: Sequence[dict[str, Any]],
    keys: dict[str, str],
    ax: Axes | None = None,
    group: str = "label",
) -> Axes:
    """Dots for each run and the mean with its standard error, per group.

    Parameters
    ----------
    rows : sequence of dict
        One row per run, with ``group`` and every key of ``keys``.
    keys : dict
        Column name -> legend label, e.g. ``{"retrained_accuracy": "retrained"}``.
    """
    ax = _axes(ax)
    names = list(dict.fromkeys(row[group] for row in rows))
    width = 0.7 / len(keys)
    for k, (key, label) in enumerate(keys.items()):
        offset = (k - (len(keys) - 1) / 2) * width
        for i, name in enumerate(names):
            values = np.array([r[key] for r in rows if r[group] == name], dtype=float)
            values = values[np.isfinite(values)]
            x = i + offset
            # runs as dots just left of their mean, so the error bar stays readable
            dots = np.full(len(values), x - 0.3 * width)
            ax.scatter(dots, values, color=f"C{k}", s=10, alpha=0.6)
            sem = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0
            ax.errorbar(
                x,
                values.mean(),
                yerr=sem,
                fmt="o",
                color=f"C{k}",
                capsize=4,
                ms=6,
                label=label if i == 0 else None,
            )
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("validation accuracy")
    ax.legend(fontsize="small")
    return ax
