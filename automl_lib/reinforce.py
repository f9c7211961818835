"""REINFORCE: the search loop that teaches the controller.

For a batch of m sampled architectures with rewards R_k, a baseline b and an
entropy weight lambda, one episode minimises

    loss = -(1/m) sum_k [ sum_t log p(a_t | a_<t) (R_k - b) + lambda sum_t H_t ]

where the sums over t run over the decisions actually made. The baseline is
an exponential moving average of batch-mean rewards, a plain number outside
the graph. Notebook 05 derives this; notebook 06 runs it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from .child import MAX_LR
from .controller import Controller, Sample
from .evaluation import Evaluator
from .search_space import Architecture, SearchSpace
from .strategies import Strategy

logger = logging.getLogger(__name__)


LIMITS = {"episodes": 10**7, "batch_size": 10**5, "hidden_size": 4096, "num_layers": 16}
"""Largest accepted integer settings; larger ones are typos that would exhaust
memory rather than runs anyone means."""

MAX_ENTROPY_WEIGHT = 1e3
"""Beyond this the entropy bonus swamps every reward and overflows the softmax."""


@dataclass(frozen=True)
class SearchConfig:
    """Settings of a REINFORCE search.

    Parameters
    ----------
    episodes : int, default 500
        Controller updates.
    batch_size : int, default 15
        Architectures m sampled per episode.
    lr : float, default 0.01
        Adam learning rate of the controller, at most
        :data:`~automl_lib.child.MAX_LR`.
    entropy_weight : float, default 0.01
        lambda, the weight of the entropy bonus.
    baseline_decay : float, default 0.9
        b <- decay * b + (1 - decay) * mean reward.
    use_baseline : bool, default True
        False sets b = 0 (plain REINFORCE), for ablations.
    hidden_size, num_layers : int, default 32, 2
        Controller LSTM size (see :class:`~automl_lib.controller.Controller`).
    """

    episodes: int = 500
    batch_size: int = 15
    lr: float = 0.01
    entropy_weight: float = 0.01
    baseline_decay: float = 0.9
    use_baseline: bool = True
    hidden_size: int = 32
    num_layers: int = 2

    def __post_init__(self) -> None:
        for name, largest in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be a positive integer, got {value!r}")
            if not 1 <= int(value) <= largest:
                raise ValueError(f"{name} must be between 1 and {largest}, got {value}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.use_baseline, bool):
            raise TypeError(
                f"use_baseline must be True or False, got {self.use_baseline!r}"
            )
        for name in ("lr", "entropy_weight", "baseline_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.lr <= 0:
            raise ValueError(f"lr must be a finite positive number, got {self.lr!r}")
        if abs(self.entropy_weight) > MAX_ENTROPY_WEIGHT:
            raise ValueError(
                f"entropy_weight must be between -{MAX_ENTROPY_WEIGHT:g} and "
                f"{MAX_ENTROPY_WEIGHT:g}, got {self.entropy_weight!r}"
            )
        if self.lr > MAX_LR:
            raise ValueError(f"lr must be at most {MAX_LR:g}, got {self.lr!r}")
        if not 0 <= self.baseline_decay < 1:
            raise ValueError(
                f"baseline_decay must be in [0, 1), got {self.baseline_decay!r}"
            )


class Baseline:
    """Exponential moving average of batch-mean rewards.

    :meth:`update` returns the b to use for this batch (the value from before
    the batch; the first batch's own mean the first time), then moves b.
    """

    def __init__(self, decay: float = 0.9, value: float | None = None) -> None:
        self.decay = decay
        self.value = value

    def update(self, rewards: list[float]) -> float:
        mean = sum(rewards) / len(rewards)
        if self.value is None:
            self.value = mean
        used = self.value
        self.value = self.decay * self.value + (1 - self.decay) * mean
        return used


def reinforce_loss(
    sample: Sample, rewards: torch.Tensor, baseline: float, entropy_weight: float
) -> torch.Tensor:
    """The REINFORCE loss of one batch (see the module docstring).

    Parameters
    ----------
    sample : Sample
        From :meth:`Controller.sample`, with log-probabilities of shape (m, T).
    rewards : Tensor of shape (m,)
    baseline : float
        b, a plain number.
    entropy_weight : float
        lambda.
    """
    advantage = rewards - baseline  # (m,)
    log_p = sample.log_probs.sum(dim=1)  # (m,)
    entropy = sample.entropies.sum(dim=1)  # (m,)
    return -(log_p * advantage + entropy_weight * entropy).mean()


class Search(Strategy):
    """One REINFORCE architecture search, episode by episode.

    Parameters
    ----------
    space : SearchSpace
    evaluator : Evaluator
        Turns sampled architectures into rewards (trains children, or a toy
        function).
    config : SearchConfig, optional
    seed : int, default 0
        Seeds the controller's weights and its sampling.

    Examples
    --------
    >>> from automl_lib.evaluation import FunctionEvaluator
    >>> toy = FunctionEvaluator(lambda arch: float(arch.depth == 1))
    >>> search = Search(SearchSpace(), toy, SearchConfig(episodes=3), seed=0)
    >>> len(search.run(progress=False).history)
    3
    """

    name = "reinforce"

    def __init__(
        self,
        space: SearchSpace,
        evaluator: Evaluator,
        config: SearchConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.config = config or SearchConfig()
        super().__init__(space, evaluator, self.config.episodes, self.config.batch_size)
        self.seed = seed
        self.controller = Controller(
            space, self.config.hidden_size, self.config.num_layers, seed=seed
        )
        self.optimizer = torch.optim.Adam(
            self.controller.parameters(), lr=self.config.lr
        )
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.baseline = Baseline(self.config.baseline_decay)
        self._sample: Sample | None = None

    def propose(self) -> list[Architecture]:
        self._sample = self.controller.sample(self.batch_size, self.generator)
        return self._sample.architectures

    def learn(self, rewards: list[float]) -> dict[str, float]:
        sample = self._sample
        assert sample is not None, "propose() comes before learn()"
        self._sample = None

        # b is a plain float: the advantage never sends gradient into it
        b = self.baseline.update(rewards) if self.config.use_baseline else 0.0
        loss = reinforce_loss(
            sample, torch.tensor(rewards), b, self.config.entropy_weight
        )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        entropy = sample.entropies.sum(dim=1).mean().item()
        logger.debug("episode %d: loss %.4f", self.episode + 1, loss.item())
        return {"baseline": b, "loss": loss.item(), "entropy": entropy}

    # state: what a checkpoint holds besides the records ---------------------

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "seed": self.seed,
            "config": dataclasses.asdict(self.config),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "baseline": self.baseline.value,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        baseline = state.get("baseline")
        if baseline is not None and not isinstance(baseline, float):
            raise ValueError(f"bad saved baseline: {baseline!r}")
        generator = state.get("generator")
        if not isinstance(generator, torch.Tensor) or generator.dtype != torch.uint8:
            raise ValueError("bad saved random generator state")
        try:
            self.controller.load_state_dict(state["controller"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.generator.set_state(generator)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"bad saved controller state: {error}") from None
        self.baseline.value = baseline
