"""From architectures to rewards: the evaluator, its cache and its back ends.

An evaluator trains each architecture it has not seen before and answers the
rest from its cache, so one architecture is trained once per run. Notebook 06
uses it; notebook 03 compares what the trainers cost.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Protocol

from .batched import parallel_map, train_batch, warn_if_diverged
from .child import ChildResult, NonFiniteLossWarning, TrainConfig, train_child
from .data import Dataset
from .search_space import Architecture

logger = logging.getLogger(__name__)

TRAINERS = ("batched", "reference")


class Evaluator(Protocol):
    """Anything that turns a batch of architectures into results, in order."""

    num_trained: int

    def evaluate(self, archs: Sequence[Architecture]) -> list[ChildResult]: ...


class ChildEvaluator:
    """Train children on a data set, with a cache keyed by architecture,
    data and settings.

    Parameters
    ----------
    data : Dataset
    config : TrainConfig, optional
    seed : int, default 0
        Seed of every child's initial weights (with its architecture).
    trainer : {"batched", "reference"}, default "batched"
        The batched trainer trains many children at once; the reference trainer
        trains them one at a time with autograd.
    processes : int, default 1
        Worker processes for local training (1: in this process).
    cache : dict, optional
        Shared cache; a new one by default.

    Attributes
    ----------
    num_trained : int
        Children actually trained (cache misses).
    """

    def __init__(
        self,
        data: Dataset,
        config: TrainConfig | None = None,
        seed: int = 0,
        trainer: str = "batched",
        processes: int = 1,
        cache: dict[Hashable, ChildResult] | None = None,
    ) -> None:
        if trainer not in TRAINERS:
            raise ValueError(f"trainer must be one of {TRAINERS}, got {trainer!r}")
        self.data = data
        self.config = config or TrainConfig()
        self.seed = seed
        self.trainer = trainer
        self.processes = processes
        self.cache: dict[Hashable, ChildResult] = {} if cache is None else cache
        self.num_trained = 0
        self._fingerprint = data.fingerprint()

    def key(self, arch: Architecture) -> Hashable:
        return (arch, self._fingerprint, self.config, self.seed)

    def evaluate(self, archs: Sequence[Architecture]) -> list[ChildResult]:
        """Results for ``archs`` in order; ``cached`` marks those not trained now."""
        missing: list[Architecture] = []
        for arch in archs:
            if self.key(arch) not in self.cache and arch not in missing:
                missing.append(arch)
        for arch, result in zip(missing, self.train(missing), strict=True):
            self.cache[self.key(arch)] = result
        self.num_trained += len(missing)

        results = []
        fresh = set(missing)
        for arch in archs:
            result = self.cache[self.key(arch)]
            results.append(dataclasses.replace(result, cached=arch not in fresh))
            fresh.discard(arch)
        return results

    def train(self, archs: list[Architecture]) -> list[ChildResult]:
        """Train ``archs`` (no cache) with the chosen trainer and back end.

        The batched trainer trains the groups of :func:`~automl_lib.batched.
        plan_groups`; the reference trainer one child per task. With
        ``processes > 1`` the tasks run in that many single-threaded worker
        processes; the results are bit-identical to those of one process.
        """
        if not archs:
            return []
        logger.debug(
            "training %d children (%s trainer, %d processes)",
            len(archs),
            self.trainer,
            self.processes,
        )
        if self.trainer == "batched":
            return train_batch(
                archs, self.data, self.config, self.seed, processes=self.processes
            )
        tasks = [
            _ReferenceTask(arch, self.data, self.config, self.seed) for arch in archs
        ]
        results = parallel_map(_run_reference, tasks, self.processes)
        return [warn_if_diverged(result) for result in results]


@dataclasses.dataclass(frozen=True)
class _ReferenceTask:
    """One child for the reference trainer, as a picklable unit of work."""

    arch: Architecture
    data: Dataset
    config: TrainConfig
    seed: int


def _run_reference(task: _ReferenceTask) -> ChildResult:
    # the caller warns, wherever this ran
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteLossWarning)
        return train_child(
            task.arch, task.data, task.config, task.seed, keep_history=False
        )


class FunctionEvaluator:
    """Rewards from a plain function of the architecture, no training.

    For closed-form toy problems that test whether a search learns.

    Examples
    --------
    >>> ev = FunctionEvaluator(lambda arch: float(arch.depth == 2))
    >>> [r.reward for r in ev.evaluate([Architecture.parse("8-relu 4-tanh")])]
    [1.0]
    """

    def __init__(self, reward_fn: Callable[[Architecture], float]) -> None:
        self.reward_fn = reward_fn
        self.num_trained = 0

    def evaluate(self, archs: Sequence[Architecture]) -> list[ChildResult]:
        self.num_trained += len(archs)
        results = []
        for arch in archs:
            reward = float(self.reward_fn(arch))
            results.append(ChildResult(arch, reward, reward, 0, 0))
        return results
