"""Child networks: build one from an architecture, train it, turn it into a reward.

This is the reference trainer: one child at a time, plain PyTorch autograd.
The batched trainer in :mod:`automl_lib.batched` follows the same protocol and
is tested against this one. Notebook 02 teaches this module.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset
from .search_space import Architecture

Weights = tuple[tuple[np.ndarray, np.ndarray], ...]
"""A child's parameters: one ``(W, b)`` pair per linear layer, W of shape (out, in)."""

REWARD_RULES = ("best", "last5")

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
}


MAX_LR = 1e30
"""Largest learning rate accepted. Adam's first step is about 10 x lr; a step past
float32's range (3.4e38) makes the optimiser raise instead of diverging."""

MAX_EPOCHS = 100_000
"""Largest max_epochs accepted: the batched trainer keeps a per-epoch record of
every child, so a typo such as 10**12 would exhaust memory."""


class NonFiniteLossWarning(RuntimeWarning):
    """A child's training loss became NaN or infinite; it got reward 0."""


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def _finite_float(
    name: str, value: Any, positive: bool = False, maximum: float = math.inf
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or (positive and number <= 0):
        kind = "a finite positive number" if positive else "a finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if number > maximum:
        raise ValueError(f"{name} must be at most {maximum:g}, got {value!r}")
    return number


@dataclass(frozen=True)
class TrainConfig:
    """How every child is trained and rewarded.

    Parameters
    ----------
    max_epochs : int, default 1000
        Full-batch Adam steps at most.
    lr : float, default 0.01
        Adam learning rate, positive and at most :data:`MAX_LR`.
    patience : int, default 50
        Stop after this many epochs without a strict improvement of the
        validation accuracy.
    reward_exponent : float, default 3.0
        reward = accuracy ** reward_exponent; finite and positive.
    reward_rule : {"best", "last5"}, default "best"
        ``"best"`` rewards the best epoch, whose weights are kept. ``"last5"`` is
        the report's literal rule: the best of the last five epochs trained.
    dtype : {"float32", "float64"}, default "float32"
    """

    max_epochs: int = 1000
    lr: float = 0.01
    patience: int = 50
    reward_exponent: float = 3.0
    reward_rule: str = "best"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "max_epochs", _positive_int("max_epochs", self.max_epochs)
        )
        if self.max_epochs > MAX_EPOCHS:
            raise ValueError(
                f"max_epochs must be at most {MAX_EPOCHS}, got {self.max_epochs}"
            )
        object.__setattr__(self, "patience", _positive_int("patience", self.patience))
        lr = _finite_float("lr", self.lr, positive=True, maximum=MAX_LR)
        object.__setattr__(self, "lr", lr)
        # a zero exponent makes every reward 1; a negative one divides by zero
        exponent = _finite_float("reward_exponent", self.reward_exponent, True)
        object.__setattr__(self, "reward_exponent", exponent)
        if self.reward_rule not in REWARD_RULES:
            raise ValueError(
                f"reward_rule must be one of {REWARD_RULES}, got {self.reward_rule!r}"
            )
        if self.dtype not in ("float32", "float64"):
            raise ValueError(
                f"dtype must be 'float32' or 'float64', got {self.dtype!r}"
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32


@dataclass
class ChildResult:
    """What training one child produced.

    ``reward`` is what the search maximises; ``val_accuracy`` is the accuracy of
    the kept weights; ``status`` is ``"ok"`` or ``"non-finite"``; ``cached`` says
    the result came from an evaluator's cache rather than from training now.
    """

    architecture: Architecture
    reward: float
    val_accuracy: float
    best_epoch: int
    epochs_trained: int
    status: str = "ok"
    cached: bool = False
    weights: Weights | None = field(default=None, repr=False)
    history: dict[str, list[float]] | None = field(default=None, repr=False)


def child_seed(seed: int, arch: Architecture) -> int:
    """Seed of a child's initial weights: a function of the run seed and the
    architecture only, so batch-mates and positions never matter."""
    digest = hashlib.sha256(f"{int(seed)}|{arch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def layer_sizes(arch: Architecture, num_features: int, num_classes: int) -> list[int]:
    """Widths from input to output, e.g. ``[2, 8, 4, 4, 2]``."""
    return [num_features, *arch.units, num_classes]


def init_weights(
    arch: Architecture,
    num_features: int,
    num_classes: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Initial ``(W, b)`` per linear layer, as PyTorch's ``nn.Linear`` draws them:
    uniform on [-1/sqrt(fan_in), 1/sqrt(fan_in)], from a generator seeded by
    :func:`child_seed`. Drawn in float64, then cast, so both dtypes agree."""
    generator = torch.Generator().manual_seed(child_seed(seed, arch))
    sizes = layer_sizes(arch, num_features, num_classes)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = 1.0 / math.sqrt(fan_in)
        W = torch.rand(fan_out, fan_in, generator=generator, dtype=torch.float64)
        b = torch.rand(fan_out, generator=generator, dtype=torch.float64)
        params.append(((2 * W - 1) * bound, (2 * b - 1) * bound))
    return [(W.to(dtype), b.to(dtype)) for W, b in params]


def build_child(
    arch: Architecture,
    num_features: int,
    num_classes: int,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    weights: Weights | None = None,
) -> nn.Sequential:
    """A ``Linear -> activation -> ... -> Linear`` classifier for ``arch``.

    Its initial weights come from :func:`init_weights`, or from ``weights``.

    Examples
    --------
    >>> net = build_child(Architecture.parse("8-tanh 4-relu"), 2, 2)
    >>> net
    Sequential(
      (0): Linear(in_features=2, out_features=8, bias=True)
      (1): Tanh()
      (2): Linear(in_features=8, out_features=4, bias=True)
      (3): ReLU()
      (4): Linear(in_features=4, out_features=2, bias=True)
    )
    """
    if weights is None:
        params = init_weights(arch, num_features, num_classes, seed, dtype)
    else:
        params = [
            (torch.as_tensor(W, dtype=dtype), torch.as_tensor(b, dtype=dtype))
            for W, b in weights
        ]
    sizes = layer_sizes(arch, num_features, num_classes)
    modules: list[nn.Module] = []
    for i, (W, b) in enumerate(params):
        if tuple(W.shape) != (sizes[i + 1], sizes[i]):
            raise ValueError(
                f"weights[{i}] has shape {tuple(W.shape)}, expected "
                f"{(sizes[i + 1], sizes[i])} for {arch}"
            )
        linear = nn.Linear(sizes[i], sizes[i + 1], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(W)
            linear.bias.copy_(b)
        modules.append(linear)
        if i < arch.depth:
            modules.append(ACTIVATION_MODULES[arch.layers[i].activation]())
    return nn.Sequential(*modules)


def get_weights(model: nn.Sequential) -> Weights:
    """The ``(W, b)`` pairs of a child as NumPy arrays (copies)."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    return tuple(
        (m.weight.detach().cpu().numpy().copy(), m.bias.detach().cpu().numpy().copy())
        for m in linears
    )


class EarlyStopping:
    """Track validation accuracy; say when it improved and when to stop.

    Only a strict improvement resets the patience counter.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = -math.inf
        self.best_epoch = 0
        self.epochs_without_improvement = 0

    def update(self, accuracy: float, epoch: int) -> bool:
        """Record one epoch's accuracy; return True if it is a new best."""
        if accuracy > self.best:
            self.best, self.best_epoch = accuracy, epoch
            self.epochs_without_improvement = 0
            return True
        self.epochs_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.epochs_without_improvement >= self.patience


def compute_reward(
    val_accuracies: list[float], best_accuracy: float, config: TrainConfig
) -> float:
    """Reward from a child's per-epoch validation accuracies.

    ``"best"``: ``best_accuracy ** exponent``. ``"last5"``: the largest of the
    last five epochs trained, to the same power.
    """
    if config.reward_rule == "last5":
        accuracy = max(val_accuracies[-5:])
    else:
        accuracy = best_accuracy
    return float(accuracy**config.reward_exponent)


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Share of points whose largest logit is the true class."""
    with torch.no_grad():
        correct = int((model(X).argmax(dim=1) == y).sum().item())
    return correct / len(y)


def diverged_result(arch: Architecture, epochs: int) -> ChildResult:
    """The defined outcome of a child whose loss became non-finite: reward 0."""
    warnings.warn(
        f"child {arch}: training loss became non-finite after {epochs} epochs; "
        "reward set to 0",
        NonFiniteLossWarning,
        stacklevel=3,
    )
    return ChildResult(arch, 0.0, 0.0, 0, epochs, status="non-finite")


def train_child(
    arch: Architecture,
    data: Dataset,
    config: TrainConfig | None = None,
    seed: int = 0,
    keep_history: bool = True,
) -> ChildResult:
    """Train one child with full-batch Adam and early stopping (reference trainer).

    Parameters
    ----------
    arch : Architecture
    data : Dataset
        Trains on ``X_train``, stops early on ``X_val``; never reads the test split.
    config : TrainConfig, optional
    seed : int, default 0
        With ``arch``, fixes the initial weights (see :func:`child_seed`).
    keep_history : bool, default True
        Return per-epoch ``loss`` and ``val_accuracy`` lists.

    Returns
    -------
    ChildResult
        With the weights of the best epoch.
    """
    config = config or TrainConfig()
    dtype = config.torch_dtype
    model = build_child(arch, data.num_features, data.num_classes, seed, dtype)
    X, y = torch.as_tensor(data.X_train, dtype=dtype), torch.as_tensor(data.y_train)
    X_val, y_val = torch.as_tensor(data.X_val, dtype=dtype), torch.as_tensor(data.y_val)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    stopper = EarlyStopping(config.patience)
    losses: list[float] = []
    val_accuracies: list[float] = []
    best_weights = get_weights(model)

    for epoch in range(1, config.max_epochs + 1):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(X), y)
        if not torch.isfinite(loss):
            return diverged_result(arch, epoch - 1)
        loss.backward()
        optimizer.step()

        val_accuracy = accuracy(model, X_val, y_val)
        losses.append(loss.item())
        val_accuracies.append(val_accuracy)
        if stopper.update(val_accuracy, epoch):
            best_weights = get_weights(model)
        if stopper.should_stop:
            break

    reward = compute_reward(val_accuracies, stopper.best, config)
    history = {"loss": losses, "val_accuracy": val_accuracies} if keep_history else None
    return ChildResult(
        arch,
        reward,
        stopper.best,
        stopper.best_epoch,
        len(val_accuracies),
        weights=best_weights,
        history=history,
    )


def score(
    arch: Architecture,
    weights: Weights,
    X: np.ndarray,
    y: np.ndarray,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Accuracy of a trained child on arrays ``X``, ``y``."""
    num_features, num_classes = weights[0][0].shape[1], weights[-1][0].shape[0]
    model = build_child(arch, num_features, num_classes, dtype=dtype, weights=weights)
    return accuracy(model, torch.as_tensor(X, dtype=dtype), torch.as_tensor(y))


def score_on_test(arch: Architecture, weights: Weights, data: Dataset) -> float:
    """The final scoring call: the only place a search reads the test split."""
    X_test, y_test = data.test_split()
    return score(arch, weights, X_test, y_test)
