"""A run on disk: summary, per-episode history, per-child record, figures.

A run folder holds ``summary.json``, ``history.csv`` (one row per episode),
``children.csv`` (one row per sampled child), the controller's weights and
PNG figures. Everything is plain text or weights-only tensors, so opening a
shared run folder never runs code from it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .child import ChildResult, score_on_test
from .data import Dataset
from .reinforce import Search
from .strategies import CHILD_COLUMNS, HISTORY_COLUMNS, Strategy, child_row

SUMMARY = "summary.json"
HISTORY = "history.csv"
CHILDREN = "children.csv"
CONTROLLER = "controller.pt"


def prepare_folder(path: str | Path, overwrite: bool = False) -> Path:
    """Create an empty run folder; refuse an existing non-empty one unless
    ``overwrite``.

    Raises
    ------
    FileExistsError
        If ``path`` exists, is not empty and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"out: {path} exists and is not a folder")
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"out: run folder {path} already exists; choose another folder, "
                "resume it, or pass overwrite (--overwrite) to replace it"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clean(value: Any) -> Any:
    # JSON has no NaN; write null instead
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({k: _clean(v) for k, v in data.items()}, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_json(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def write_csv(
    path: str | Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]
) -> None:
    """Write rows as CSV with the given columns (floats at full precision)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: repr(v) if isinstance(v, float) else v for k, v in row.items()}
            )
    os.replace(tmp, path)


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read a CSV written by :func:`write_csv`, converting numbers and booleans."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            {k: _parse(v) for k, v in row.items()} for row in csv.DictReader(handle)
        ]


def _parse(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def base_summary() -> dict[str, Any]:
    """Fields every summary carries: the library version."""
    return {"library_version": __version__}


def finish_search(
    out: Path,
    search: Strategy,
    data: Dataset,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Score the best child once on the test split and write the run folder.

    Writes ``summary.json``, ``history.csv``, ``children.csv``, the controller
    (for REINFORCE) and the figures; returns the summary.
    """
    best = search.best
    if best is None or best.weights is None:
        raise ValueError("the search has no trained best child to score")
    test_accuracy = score_on_test(best.architecture, best.weights, data)

    summary = {
        **base_summary(),
        "strategy": search.name,
        "best_architecture": str(best.architecture),
        "best_reward": best.reward,
        "validation_accuracy": best.val_accuracy,
        "test_accuracy": test_accuracy,
        "episodes": search.episode,
        "children_sampled": search.children_sampled,
        "children_trained": search.children_trained,
        "seconds": search.seconds,
        **extra,
    }
    write_csv(out / HISTORY, search.history, HISTORY_COLUMNS)
    write_csv(out / CHILDREN, search.children, CHILD_COLUMNS)
    if isinstance(search, Search):
        search.controller.save(out / CONTROLLER)
        summary["controller_greedy_architecture"] = str(search.controller.greedy())
    save_search_figures(out, search, data)
    write_json(out / SUMMARY, summary)
    return summary


def save_search_figures(out: Path, search: Strategy, data: Dataset) -> None:
    """Reward curve and the best child's decision regions over all points."""
    import matplotlib.pyplot as plt

    from .plotting import plot_decision_regions, plot_rewards

    fig, ax = plt.subplots(figsize=(7, 4))
    plot_rewards(search.history, ax=ax)
    fig.tight_layout()
    fig.savefig(out / "rewards.png", dpi=120)
    plt.close(fig)

    best = search.best
    if best is not None and best.weights is not None and data.num_features == 2:
        X, y = data.all_points()
        fig, ax = plt.subplots(figsize=(5, 4))
        plot_decision_regions(best.architecture, best.weights, X, y, ax=ax)
        fig.tight_layout()
        fig.savefig(out / "decision_regions.png", dpi=120)
        plt.close(fig)


RANDOM_COLUMNS = (
    "index",
    "architecture",
    "reward",
    "val_accuracy",
    "epochs_trained",
    "cached",
    "status",
)


def finish_random(
    out: Path,
    results: Sequence[ChildResult],
    num_trained: int,
    seconds: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Write the run folder of a random-architecture experiment; return the summary."""
    import matplotlib.pyplot as plt

    from .plotting import plot_accuracy_histogram

    best = max(results, key=lambda r: r.reward)
    summary = {
        **base_summary(),
        "strategy": "random",
        "best_architecture": str(best.architecture),
        "best_reward": best.reward,
        "validation_accuracy": best.val_accuracy,
        "children_sampled": len(results),
        "children_trained": num_trained,
        "seconds": seconds,
        **extra,
    }
    rows = [{"index": i, **child_row(0, i, r)} for i, r in enumerate(results)]
    write_csv(out / CHILDREN, rows, RANDOM_COLUMNS)

    fig, ax = plt.subplots(figsize=(7, 4))
    plot_accuracy_histogram([r.val_accuracy for r in results], ax=ax)
    ax.set_title(f"{len(results)} random architectures")
    fig.tight_layout()
    fig.savefig(out / "histogram.png", dpi=120)
    plt.close(fig)
    write_json(out / SUMMARY, summary)
    return summary
