"""Figures: reward curves, decision regions, accuracy histograms.

Every function draws on a Matplotlib ``Axes`` (a new one if none is given) and
returns it, so notebooks can arrange figures and the command line can save them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from .child import Weights, build_child
from .search_space import Architecture


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


def plot_rewards(
    history: Sequence[dict[str, Any]],
    window: int = 20,
    ax: Axes | None = None,
    show_baseline: bool = True,
) -> Axes:
    """Mean reward per episode with its ``window``-episode moving average."""
    ax = _axes(ax)
    episodes = [row["episode"] for row in history]
    rewards = [row["mean_reward"] for row in history]
    ax.plot(episodes, rewards, color="tab:blue", alpha=0.35, lw=1, label="mean reward")
    ax.plot(
        episodes,
        moving_average(rewards, window),
        color="tab:blue",
        lw=2,
        label=f"{window}-episode moving average",
    )
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
