"""Search spaces, architectures and random sampling.

A search space lists the decisions a controller may make: a unit count and an
activation for each hidden layer, up to a maximum depth, and where to end.
An :class:`Architecture` is one validated answer. Notebook 03 teaches this module.
"""

from __future__ import annotations

import itertools
import json
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu")
"""Activation names a search space may use."""

MAX_LAYERS_LIMIT = 64
"""Deeper spaces are refused: the controller and the trainers are not built for them."""

MAX_UNITS = 4096
"""Wider layers are refused: one 4096 x 4096 layer already holds 16.8M weights."""

EMPTY_NAME = "linear"
"""Readable form of the architecture with no hidden layer."""


def _as_int(name: str, value: Any) -> int:
    # bool is an int subclass, but True units is a typo, not a count
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


@dataclass(frozen=True, order=True)
class Layer:
    """One hidden layer: a unit count and an activation name."""

    units: int
    activation: str

    def __str__(self) -> str:
        return f"{self.units}-{self.activation}"


@dataclass(frozen=True, order=True)
class Architecture:
    """The hidden layers of one child network, input side first.

    An architecture is hashable, prints in a readable form and parses back
    from it. The empty architecture (no hidden layer) is a linear classifier.

    Examples
    --------
    >>> arch = Architecture.parse("8-tanh 4-relu 4-relu")
    >>> arch.depth, arch.narrowest
    (3, 4)
    >>> Architecture.parse(str(arch)) == arch
    True
    """

    layers: tuple[Layer, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a Layer, got {layer!r}")
            units = _as_int(f"layers[{i}].units", layer.units)
            if not 1 <= units <= MAX_UNITS:
                raise ValueError(
                    f"layers[{i}].units must be between 1 and {MAX_UNITS}, got {units}"
                )
            if layer.activation not in ACTIVATIONS:
                raise ValueError(
                    f"layers[{i}].activation must be one of {ACTIVATIONS}, "
                    f"got {layer.activation!r}"
                )
        object.__setattr__(self, "layers", layers)

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[int, str]]) -> Architecture:
        """Build from ``[(units, activation), ...]``."""
        return cls(tuple(Layer(_as_int("units", u), str(a)) for u, a in pairs))

    @classmethod
    def parse(cls, text: str) -> Architecture:
        """Parse the readable form, e.g. ``"8-tanh 4-relu"`` or ``"linear"``."""
        if not isinstance(text, str):
            raise TypeError(f"architecture text must be a string, got {text!r}")
        words = text.split()
        if words in ([], [EMPTY_NAME]):
            return cls()
        pairs = []
        for word in words:
            units, sep, activation = word.partition("-")
            if not sep or not units.isdigit():
                raise ValueError(
                    f"cannot parse layer {word!r} in architecture {text!r}: "
                    "expected UNITS-ACTIVATION such as '8-tanh'"
                )
            pairs.append((int(units), activation))
        try:
            return cls.from_pairs(pairs)
        except ValueError as error:
            raise ValueError(f"architecture {text!r}: {error}") from None

    def to_json(self) -> str:
        """JSON list of ``[units, activation]`` pairs."""
        return json.dumps([[layer.units, layer.activation] for layer in self.layers])

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        if not isinstance(data, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in data
        ):
            raise ValueError(
                f"architecture JSON must be [[units, activation], ...]: {text!r}"
            )
        return cls.from_pairs([(p[0], p[1]) for p in data])

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.layers)

    @property
    def units(self) -> tuple[int, ...]:
        return tuple(layer.units for layer in self.layers)

    @property
    def activations(self) -> tuple[str, ...]:
        return tuple(layer.activation for layer in self.layers)

    @property
    def narrowest(self) -> int | None:
        """Smallest unit count, or None for the empty architecture."""
        return min(self.units) if self.layers else None

    def __str__(self) -> str:
        return " ".join(str(layer) for layer in self.layers) or EMPTY_NAME

    def __repr__(self) -> str:
        return f"Architecture({str(self)!r})"


@dataclass(frozen=True)
class SearchSpace:
    """The decisions a controller or a sampler may make.

    Parameters
    ----------
    units : sequence of int, default (1, 2, 4, 8, 16, 32)
        Unit counts a hidden layer may have; distinct integers from 1 to
        :data:`MAX_UNITS` (NumPy integers count as integers).
    activations : sequence of str, default ("relu", "tanh")
        Activation names, each one of :data:`ACTIVATIONS`, distinct.
    max_layers : int, default 5
        Largest number of hidden layers, between 1 and :data:`MAX_LAYERS_LIMIT`.

    Raises
    ------
    TypeError, ValueError
        For a value that is not allowed, naming the field and the value.

    Examples
    --------
    >>> space = SearchSpace()
    >>> space.num_architectures()
    271453
    """

    units: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    activations: tuple[str, ...] = ("relu", "tanh")
    max_layers: int = 5

    def __post_init__(self) -> None:
        units = self._check_units(self.units)
        activations = self._check_activations(self.activations)
        max_layers = _as_int("max_layers", self.max_layers)
        if not 1 <= max_layers <= MAX_LAYERS_LIMIT:
            raise ValueError(
                f"max_layers must be between 1 and {MAX_LAYERS_LIMIT}, got {max_layers}"
            )
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "activations", activations)
        object.__setattr__(self, "max_layers", max_layers)

    @staticmethod
    def _check_units(values: Any) -> tuple[int, ...]:
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            if not isinstance(values, np.ndarray):
                raise TypeError(f"units must be a sequence of integers, got {values!r}")
        units = []
        for value in values:
            if isinstance(value, str):
                raise TypeError(f"units must be integers, got the string {value!r}")
            count = _as_int("units", value)
            if count < 1:
                raise ValueError(f"units must be positive, got {count}")
            if count > MAX_UNITS:
                raise ValueError(f"units must be at most {MAX_UNITS}, got {count}")
            units.append(count)
        if not units:
            raise ValueError("units must not be empty")
        if len(set(units)) != len(units):
            raise ValueError(f"units must be distinct, got {units}")
        return tuple(units)

    @staticmethod
    def _check_activations(values: Any) -> tuple[str, ...]:
        if isinstance(values, str) or not isinstance(values, (Sequence, np.ndarray)):
            raise TypeError(f"activations must be a sequence of names, got {values!r}")
        names = tuple(str(v) if isinstance(v, np.str_) else v for v in values)
        if not names:
            raise ValueError("activations must not be empty")
        for name in names:
            if name not in ACTIVATIONS:
                raise ValueError(
                    f"activations: unknown activation {name!r}; "
                    f"choose from {ACTIVATIONS}"
                )
        if len(set(names)) != len(names):
            raise ValueError(f"activations must be distinct, got {list(names)}")
        return names

    # decisions ------------------------------------------------------------

    @property
    def num_layer_choices(self) -> int:
        """Number of different layers: unit counts times activations."""
        return len(self.units) * len(self.activations)

    @property
    def num_steps(self) -> int:
        """Longest decision sequence: units then activation for every layer."""
        return 2 * self.max_layers

    def num_architectures(self, include_empty: bool = True) -> int:
        """Exact number of architectures in the space."""
        n = self.num_layer_choices
        total: int = sum(n**depth for depth in range(1, self.max_layers + 1))
        return total + int(include_empty)

    def architectures(self, include_empty: bool = True) -> Iterator[Architecture]:
        """Enumerate every architecture, shallow first (only for small spaces)."""
        layers = [Layer(u, a) for u in self.units for a in self.activations]
        start = 0 if include_empty else 1
        for depth in range(start, self.max_layers + 1):
            for combo in itertools.product(layers, repeat=depth):
                yield Architecture(combo)

    def check(self, arch: Architecture) -> Architecture:
        """Return ``arch`` if it lies in this space, else raise ValueError."""
        if not isinstance(arch, Architecture):
            raise TypeError(f"expected an Architecture, got {arch!r}")
        if arch.depth > self.max_layers:
            raise ValueError(
                f"architecture {arch} has {arch.depth} layers; max_layers is "
                f"{self.max_layers}"
            )
        for layer in arch.layers:
            if layer.units not in self.units:
                raise ValueError(
                    f"architecture {arch}: units {layer.units} not in {self.units}"
                )
            if layer.activation not in self.activations:
                raise ValueError(
                    f"architecture {arch}: activation {layer.activation!r} not in "
                    f"{self.activations}"
                )
        return arch

    def __contains__(self, arch: object) -> bool:
        if not isinstance(arch, Architecture):
            return False
        try:
            self.check(arch)
        except ValueError:
            return False
        return True

    # sampling -------------------------------------------------------------

    def sample(
        self,
        num: int,
        seed: int | np.random.Generator = 0,
        method: str = "depth",
    ) -> list[Architecture]:
        """Draw ``num`` random architectures with 1 to ``max_layers`` layers.

        Parameters
        ----------
        num : int
            How many architectures to draw (repeats allowed).
        seed : int or numpy.random.Generator, default 0
            Seed or generator; global random state is never used.
        method : {"depth", "uniform"}, default "depth"
            ``"depth"`` draws the depth uniformly, then each layer uniformly, so
            every depth is equally represented. ``"uniform"`` draws uniformly
            over all architectures, which is dominated by the deepest ones.
        """
        num = _as_int("num", num)
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}")
        if method not in ("depth", "uniform"):
            raise ValueError(f"method must be 'depth' or 'uniform', got {method!r}")
        rng = np.random.default_rng(seed)
        depths = np.arange(1, self.max_layers + 1)
        if method == "depth":
            weights = np.ones(self.max_layers)
        else:
            weights = np.array([float(self.num_layer_choices) ** d for d in depths])
        chosen = rng.choice(depths, size=num, p=weights / weights.sum())
        archs = []
        for depth in chosen:
            units = rng.integers(len(self.units), size=depth)
            acts = rng.integers(len(self.activations), size=depth)
            archs.append(
                Architecture(
                    tuple(
                        Layer(self.units[u], self.activations[a])
                        for u, a in zip(units, acts, strict=True)
                    )
                )
            )
        return archs

    # persistence ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "units": list(self.units),
            "activations": list(self.activations),
            "max_layers": self.max_layers,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        """Inverse of :meth:`to_dict`; every value is checked as in the constructor.

        Raises
        ------
        ValueError, TypeError
            For a missing or unknown field, or a value the constructor refuses.
        """
        if not isinstance(data, dict):
            raise TypeError(f"a search space must be a dict, got {data!r}")
        fields = {"units", "activations", "max_layers"}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown search space fields: {sorted(unknown)}")
        missing = fields - set(data)
        if missing:
            raise ValueError(f"missing search space fields: {sorted(missing)}")
        for name in ("units", "activations"):
            if not isinstance(data[name], (list, tuple)):
                raise TypeError(f"{name} must be a list, got {data[name]!r}")
        return cls(
            units=tuple(data["units"]),
            activations=tuple(data["activations"]),
            max_layers=data["max_layers"],
        )

    def describe_difference(self, other: SearchSpace) -> str:
        """Human-readable list of fields where two spaces differ ('' if none)."""
        parts = []
        for name in ("units", "activations", "max_layers"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                parts.append(f"{name}: {theirs} vs {mine}")
        return "; ".join(parts)
