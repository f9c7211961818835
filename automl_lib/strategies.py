"""Search strategies that share one budget accounting.

A strategy proposes a batch of architectures per episode, has them evaluated
and records every child. REINFORCE (:class:`automl_lib.reinforce.Search`) and
random search below count children sampled and children trained the same way,
so notebook 08 compares them at equal cost.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .child import ChildResult
from .evaluation import Evaluator
from .search_space import Architecture, SearchSpace

HISTORY_COLUMNS = (
    "episode",
    "mean_reward",
    "max_reward",
    "baseline",
    "loss",
    "entropy",
    "best_reward",
    "seconds",
)
"""Columns of a search history; ``seconds`` is the only wall-clock column."""

CHILD_COLUMNS = (
    "episode",
    "position",
    "architecture",
    "reward",
    "val_accuracy",
    "epochs_trained",
    "cached",
    "status",
)
"""Columns of the per-child record, one row per sampled child."""


def child_row(episode: int, position: int, result: ChildResult) -> dict[str, Any]:
    """One row of the per-child record."""
    return {
        "episode": episode,
        "position": position,
        "architecture": str(result.architecture),
        "reward": result.reward,
        "val_accuracy": result.val_accuracy,
        "epochs_trained": result.epochs_trained,
        "cached": result.cached,
        "status": result.status,
    }


RESULT_FIELDS = {
    "architecture": str,
    "reward": float,
    "val_accuracy": float,
    "best_epoch": int,
    "epochs_trained": int,
    "status": str,
    "cached": bool,
}


def result_state(result: ChildResult) -> dict[str, Any]:
    """A child's result as plain data and tensors, for weights-only saving.

    Floats stay Python floats and weights keep their dtype, so
    :func:`result_from_state` gives back exactly the same numbers.
    """
    state: dict[str, Any] = {
        "architecture": str(result.architecture),
        "reward": float(result.reward),
        "val_accuracy": float(result.val_accuracy),
        "best_epoch": int(result.best_epoch),
        "epochs_trained": int(result.epochs_trained),
        "status": result.status,
        "cached": bool(result.cached),
        "weights": None,
        "history": None,
    }
    if result.weights is not None:
        state["weights"] = [
            [torch.tensor(np.asarray(W)), torch.tensor(np.asarray(b))]
            for W, b in result.weights
        ]
    if result.history is not None:
        history = result.history.items()
        state["history"] = {k: [float(v) for v in vs] for k, vs in history}
    return state


def result_from_state(state: Any) -> ChildResult:
    """Inverse of :func:`result_state`; every field is checked.

    Raises
    ------
    ValueError
        If a field is missing or of the wrong kind.
    """
    if not isinstance(state, dict):
        raise ValueError(f"a child result must be a dict, got {type(state).__name__}")
    values: dict[str, Any] = {}
    for name, kind in RESULT_FIELDS.items():
        value = state.get(name)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            raise ValueError(f"child result field {name} is {value!r}")
        values[name] = value
    weights = state.get("weights")
    if weights is not None:
        if not isinstance(weights, list) or not all(
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(t, torch.Tensor) for t in pair)
            for pair in weights
        ):
            raise ValueError("child result weights must be [[W, b], ...] tensors")
        weights = tuple((W.numpy(), b.numpy()) for W, b in weights)
    history = state.get("history")
    if history is not None and not (
        isinstance(history, dict) and all(isinstance(v, list) for v in history.values())
    ):
        raise ValueError("child result history must be a dict of lists")
    architecture = Architecture.parse(values.pop("architecture"))
    return ChildResult(architecture, **values, weights=weights, history=history)


def _check_rows(rows: Any, columns: Sequence[str], what: str) -> list[dict[str, Any]]:
    # records hold plain numbers, strings and booleans under fixed columns
    if not isinstance(rows, list):
        raise ValueError(f"{what} must be a list of rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or list(row) != list(columns):
            raise ValueError(f"{what} row {i} does not have the columns {columns}")
        for name, value in row.items():
            if not isinstance(value, (numbers.Real, str)):
                raise ValueError(f"{what} row {i}: {name} is {value!r}")
    return [dict(row) for row in rows]


def _differences(
    saved: dict[str, Any], mine: dict[str, Any], prefix: str = ""
) -> list[tuple[str, Any, Any]]:
    # (dotted name, saved value, this value) for every field that differs
    found = []
    for name in [*mine, *(k for k in saved if k not in mine)]:
        theirs, ours = saved.get(name), mine.get(name)
        if isinstance(theirs, dict) and isinstance(ours, dict):
            found += _differences(theirs, ours, f"{prefix}{name}.")
        elif theirs != ours:
            found.append((prefix + name, theirs, ours))
    return found


class Strategy:
    """Episode loop, records and best child, common to every strategy.

    Subclasses implement :meth:`propose` and may override :meth:`learn`; a
    subclass with state of its own (weights, random generators) adds it in
    ``_extra_state`` and ``_load_extra_state``, so :meth:`state_dict` and
    :meth:`load_state_dict` carry it through a checkpoint.

    Attributes
    ----------
    history : list of dict
        One row per episode (:data:`HISTORY_COLUMNS`).
    children : list of dict
        One row per sampled child, in sampling order (:data:`CHILD_COLUMNS`).
    best : ChildResult or None
        Best child so far (the first found among equal rewards), with weights.
    """

    name = "strategy"

    def __init__(
        self, space: SearchSpace, evaluator: Evaluator, episodes: int, batch_size: int
    ) -> None:
        self.space = space
        self.evaluator = evaluator
        self.episodes = episodes
        self.batch_size = batch_size
        self.history: list[dict[str, Any]] = []
        self.children: list[dict[str, Any]] = []
        self.best: ChildResult | None = None
        self.seconds = 0.0

    @property
    def episode(self) -> int:
        """Episodes done so far."""
        return len(self.history)

    @property
    def done(self) -> bool:
        return self.episode >= self.episodes

    @property
    def children_sampled(self) -> int:
        return len(self.children)

    @property
    def children_trained(self) -> int:
        return sum(not row["cached"] for row in self.children)

    def propose(self) -> list[Architecture]:
        raise NotImplementedError

    # state ------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """What must match for a saved state to continue this strategy."""
        return {
            "strategy": self.name,
            "space": self.space.to_dict(),
            "episodes": self.episodes,
            "batch_size": self.batch_size,
        }

    def state_dict(self, records: bool = True) -> dict[str, Any]:
        """Everything needed to continue after the current episode, as plain
        data and tensors (``torch.save`` with weights-only loading).

        The evaluator's cache is not included: see :mod:`automl_lib.runs`.
        With ``records=False`` the history and children rows are left out (a
        checkpoint writes them episode by episode instead).
        """
        rows = {
            "history": [dict(row) for row in self.history],
            "children": [dict(row) for row in self.children],
        }
        return {
            "settings": self.settings(),
            **(rows if records else {}),
            "best": None if self.best is None else result_state(self.best),
            "seconds": self.seconds,
            **self._extra_state(),
        }

    def load_state_dict(self, state: Any) -> None:
        """Continue from :meth:`state_dict`'s output.

        Raises
        ------
        ValueError
            If the state comes from another strategy, search space or settings,
            or is damaged. The strategy may then be half loaded: build a new one.
        """
        if not isinstance(state, dict) or not isinstance(state.get("settings"), dict):
            raise ValueError("not a saved strategy state")
        self._check_settings(state["settings"])
        history = _check_rows(state.get("history"), HISTORY_COLUMNS, "history")
        children = _check_rows(state.get("children"), CHILD_COLUMNS, "children")
        best = None if state.get("best") is None else result_from_state(state["best"])
        seconds = state.get("seconds")
        if not isinstance(seconds, float) or len(children) != len(history) * (
            self.batch_size
        ):
            raise ValueError("saved history, children and seconds do not agree")
        # every episode once and in order, each with its children in order
        episodes = [row["episode"] for row in history]
        places = [(row["episode"] - 1, row["position"]) for row in children]
        if episodes != list(range(1, len(history) + 1)) or places != [
            divmod(i, self.batch_size) for i in range(len(children))
        ]:
            raise ValueError("saved history and children are not episodes 1 to N")
        self._load_extra_state(state)
        self.history, self.children, self.best = history, children, best
        self.seconds = seconds

    def _check_settings(self, saved: dict[str, Any]) -> None:
        mine = self.settings()
        if saved.get("space") != mine["space"]:
            try:
                other = SearchSpace.from_dict(saved.get("space"))  # type: ignore[arg-type]
            except (TypeError, ValueError) as error:
                raise ValueError(f"bad saved search space: {error}") from None
            raise ValueError(
                "the saved state is from another search space "
                f"({self.space.describe_difference(other)}; saved vs this search)"
            )
        for name, theirs, ours in _differences(saved, mine):
            raise ValueError(
                f"the saved state has {name}={theirs!r}; "
                f"this search has {name}={ours!r}"
            )

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def learn(self, rewards: list[float]) -> dict[str, float]:
        """Update from this batch's rewards; return the history's extra columns."""
        return {"baseline": math.nan, "loss": math.nan, "entropy": math.nan}

    def step(self) -> dict[str, Any]:
        """One episode: propose, evaluate, learn, record; return the history row."""
        start = time.perf_counter()
        archs = self.propose()
        results = self.evaluator.evaluate(archs)
        rewards = [r.reward for r in results]
        extra = self.learn(rewards)

        for position, result in enumerate(results):
            self.children.append(child_row(self.episode + 1, position, result))
            if self.best is None or result.reward > self.best.reward:
                self.best = result
        self.seconds += time.perf_counter() - start
        assert self.best is not None
        row = {
            "episode": self.episode + 1,
            "mean_reward": sum(rewards) / len(rewards),
            "max_reward": max(rewards),
            **extra,
            "best_reward": self.best.reward,
            "seconds": self.seconds,
        }
        self.history.append({name: row[name] for name in HISTORY_COLUMNS})
        return row

    def run(
        self,
        progress: bool = True,
        callback: Callable[[Strategy], None] | None = None,
    ) -> Strategy:
        """Run the remaining episodes.

        Parameters
        ----------
        progress : bool, default True
            Show a progress bar with the mean reward and the best so far.
        callback : callable, optional
            Called with the strategy after every episode (checkpoints, live plots).
        """
        remaining = self.episodes - self.episode
        with tqdm(total=remaining, disable=not progress, desc=self.name) as bar:
            while not self.done:
                row = self.step()
                bar.update()
                bar.set_postfix(
                    mean=f"{row['mean_reward']:.3f}", best=f"{row['best_reward']:.3f}"
                )
                if callback is not None:
                    callback(self)
        return self


class RandomSearch(Strategy):
    """Random search: each episode draws ``batch_size`` architectures from the
    space's sampler, with the same budget accounting as REINFORCE.

    Parameters
    ----------
    space : SearchSpace
    evaluator : Evaluator
    episodes : int, default 500
    batch_size : int, default 15
    seed : int, default 0
    method : {"depth", "uniform"}, default "depth"
        Sampler, see :meth:`SearchSpace.sample`.
    """

    name = "random"

    def __init__(
        self,
        space: SearchSpace,
        evaluator: Evaluator,
        episodes: int = 500,
        batch_size: int = 15,
        seed: int = 0,
        method: str = "depth",
    ) -> None:
        super().__init__(space, evaluator, episodes, batch_size)
        self.method = method
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def propose(self) -> list[Architecture]:
        return self.space.sample(self.batch_size, self.rng, self.method)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "method": self.method, "seed": self.seed}

    def _extra_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        try:
            self.rng.bit_generator.state = state["rng"]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"bad random generator state: {error}") from None


def random_architectures(
    space: SearchSpace,
    evaluator: Evaluator,
    num: int,
    seed: int = 0,
    method: str = "depth",
) -> list[ChildResult]:
    """Evaluate ``num`` random architectures in one request (best for batching)."""
    return evaluator.evaluate(space.sample(num, seed, method))
