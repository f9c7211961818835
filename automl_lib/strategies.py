"""Search strategies that share one budget accounting.

A strategy proposes a batch of architectures per episode, has them evaluated
and records every child. REINFORCE (:class:`automl_lib.reinforce.Search`) and
random search below count children sampled and children trained the same way,
so notebook 08 compares them at equal cost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
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


class Strategy:
    """Episode loop, records and best child, common to every strategy.

    Subclasses implement :meth:`propose` and may override :meth:`learn`.

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
        self.rng = np.random.default_rng(seed)

    def propose(self) -> list[Architecture]:
        return self.space.sample(self.batch_size, self.rng, self.method)


def random_architectures(
    space: SearchSpace,
    evaluator: Evaluator,
    num: int,
    seed: int = 0,
    method: str = "depth",
) -> list[ChildResult]:
    """Evaluate ``num`` random architectures in one request (best for batching)."""
    return evaluator.evaluate(space.sample(num, seed, method))
