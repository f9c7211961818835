"""Data sets and their train / validation / test splits.

Two moons is the default; circles, digits and user arrays go through the same
checks. The test split sits behind :meth:`Dataset.test_split`, which only the
final scoring call uses. Notebook 01 teaches this module.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]

DEFAULT_SPLIT = (0.7, 0.2, 0.1)


@dataclass(frozen=True)
class Dataset:
    """Features and labels split three ways.

    Attributes
    ----------
    X_train, X_val : ndarray of shape (n, num_features), float32
    y_train, y_val : ndarray of shape (n,), int64
    num_classes : int
    name : str
    """

    X_train: FloatArray
    y_train: IntArray
    X_val: FloatArray
    y_val: IntArray
    _X_test: FloatArray = field(repr=False)
    _y_test: IntArray = field(repr=False)
    num_classes: int
    name: str = "custom"

    @property
    def num_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def sizes(self) -> tuple[int, int, int]:
        """Number of points in the train, validation and test splits."""
        return (len(self.y_train), len(self.y_val), len(self._y_test))

    def test_split(self) -> tuple[FloatArray, IntArray]:
        """The held-out test split: call once, for the final best architecture."""
        return self._X_test, self._y_test

    def all_points(self) -> tuple[FloatArray, IntArray]:
        """Every point (train, validation, test) for figures after final scoring."""
        X = np.concatenate([self.X_train, self.X_val, self._X_test])
        y = np.concatenate([self.y_train, self.y_val, self._y_test])
        return X, y

    def fingerprint(self) -> str:
        """Short hash of the training and validation data (for cache keys)."""
        digest = hashlib.sha256()
        for array in (self.X_train, self.y_train, self.X_val, self.y_val):
            digest.update(np.ascontiguousarray(array).tobytes())
            digest.update(str(array.shape).encode())
        return digest.hexdigest()[:16]


MAX_SEED = 2**32 - 1
"""Largest seed: scikit-learn's data set makers take seeds below 2**32."""


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and 2**32 - 1, got {seed}")
    return int(seed)


def check_arrays(X: Any, y: Any) -> tuple[FloatArray, IntArray]:
    """Validate features and labels; return float32 features and int64 labels.

    Parameters
    ----------
    X : array-like of shape (num_points, num_features)
        Finite real numbers.
    y : array-like of shape (num_points,)
        Integer class labels 0..C-1, each used at least once, C >= 2.

    Raises
    ------
    ValueError, TypeError
        Naming the field and the value: non-finite or non-2-D features, labels
        that are floats, one-hot, of the wrong length, or a single class.
    """
    X, y = _check_pair(X, y, "X", "y")
    labels = np.unique(y)
    if len(labels) < 2:
        raise ValueError(f"y must hold at least two classes, got only {labels}")
    if labels[-1] != len(labels) - 1:
        # labels are sorted and distinct: the first gap is where they part
        gap = int(np.argmax(labels != np.arange(len(labels))))
        raise ValueError(
            f"y must use every label 0..{int(labels[-1])}, but label {gap} has no "
            "points; renumber the classes"
        )
    return X, y


def _check_pair(
    X: Any, y: Any, x_name: str, y_name: str
) -> tuple[FloatArray, IntArray]:
    # shapes, dtypes and values of one split, without class-count rules
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(
            f"{x_name} must be 2-D (points, features), got shape {X.shape}"
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"{x_name} must have at least one point and one feature, got {X.shape}"
        )
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(
        X.dtype, np.complexfloating
    ):
        raise TypeError(f"{x_name} must hold real numbers, got dtype {X.dtype}")
    if not np.all(np.isfinite(X)):
        bad = int(np.sum(~np.isfinite(X)))
        raise ValueError(f"{x_name} holds {bad} non-finite values (NaN or inf)")
    with np.errstate(over="ignore"):
        X32 = X.astype(np.float32)
    if not np.all(np.isfinite(X32)):
        raise ValueError(
            f"{x_name} holds values beyond float32's range (about 3.4e38); "
            "rescale the features"
        )
    if y.ndim == 2 and y.shape[1] > 1:
        raise ValueError(
            f"{y_name} must be 1-D class labels, got shape {y.shape} "
            "(one-hot? use argmax)"
        )
    if y.ndim != 1:
        raise ValueError(f"{y_name} must be 1-D class labels, got shape {y.shape}")
    if len(y) != len(X):
        raise ValueError(
            f"{y_name} has {len(y)} labels but {x_name} has {len(X)} points"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        raise TypeError(f"{y_name} must hold integer class labels, got dtype {y.dtype}")
    if y.min() < 0:
        raise ValueError(f"{y_name} must hold labels 0..C-1, got {int(y.min())}")
    return X32, y.astype(np.int64)


def _split_counts(num_points: int, split: Sequence[float]) -> tuple[int, int, int]:
    if isinstance(split, (str, bytes)) or not isinstance(split, (Sequence, np.ndarray)):
        raise TypeError(f"split must be a sequence of three numbers, got {split!r}")
    if len(split) != 3:
        raise ValueError(
            f"split must have three parts (train, val, test), got {split!r}"
        )
    if any(isinstance(p, bool) or not isinstance(p, numbers.Real) for p in split):
        raise TypeError(f"split must hold three numbers, got {split!r}")
    parts = [float(p) for p in split]
    if any(not math.isfinite(p) or p <= 0 for p in parts):
        raise ValueError(f"split parts must be finite positive numbers, got {split!r}")
    total = sum(parts)
    num_val = int(round(num_points * parts[1] / total))
    num_test = int(round(num_points * parts[2] / total))
    num_train = num_points - num_val - num_test
    if min(num_train, num_val, num_test) < 1:
        raise ValueError(
            f"split {split!r} of {num_points} points leaves an empty part "
            f"(train {num_train}, val {num_val}, test {num_test})"
        )
    return num_train, num_val, num_test


def from_arrays(
    X: Any,
    y: Any,
    split: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    name: str = "custom",
) -> Dataset:
    """Check, shuffle once and split user arrays.

    Parameters
    ----------
    X : array-like of shape (num_points, num_features)
    y : array-like of shape (num_points,), integer labels 0..C-1
    split : three positive numbers, default (0.7, 0.2, 0.1)
        Relative sizes of the train, validation and test splits.
    seed : int, default 0
        Seed of the shuffle; global random state is left alone.
    name : str
        Shown in run folders and figures.

    Raises
    ------
    ValueError
        If a split would be empty or would miss a class, or for bad arrays.
    """
    X, y = check_arrays(X, y)
    seed = _check_seed(seed)
    num_train, num_val, _ = _split_counts(len(y), split)
    order = np.random.default_rng(seed).permutation(len(y))
    X, y = X[order], y[order]
    num_classes = int(y.max()) + 1
    parts = np.split(np.arange(len(y)), [num_train, num_train + num_val])
    for part_name, index in zip(("train", "val", "test"), parts, strict=True):
        missing = sorted(set(range(num_classes)) - set(y[index].tolist()))
        if missing:
            raise ValueError(
                f"the {part_name} split of {len(index)} points misses classes "
                f"{missing}; use more points or another split"
            )
    train, val, test = parts
    return Dataset(
        X[train], y[train], X[val], y[val], X[test], y[test], num_classes, name
    )


def from_splits(
    X_train: Any,
    y_train: Any,
    X_val: Any,
    y_val: Any,
    X_test: Any,
    y_test: Any,
    name: str = "custom",
) -> Dataset:
    """Check user arrays that are already split; nothing is shuffled.

    Parameters
    ----------
    X_train, X_val, X_test : array-like of shape (n, num_features)
        The same number of features in every split.
    y_train, y_val, y_test : array-like of shape (n,)
        Integer labels 0..C-1; every split holds every class.
    name : str
        Shown in run folders and figures.

    Raises
    ------
    ValueError, TypeError
        Naming the split's field: bad arrays, differing feature counts, or a
        split that misses a class.

    Examples
    --------
    >>> X, y = [[0.0], [1.0], [0.1], [0.9]], [0, 1, 0, 1]
    >>> from_splits(X, y, X, y, X, y).sizes
    (4, 4, 4)
    """
    splits = {}
    for part, X, y in (
        ("train", X_train, y_train),
        ("val", X_val, y_val),
        ("test", X_test, y_test),
    ):
        splits[part] = _check_pair(X, y, f"X_{part}", f"y_{part}")
    num_features = splits["train"][0].shape[1]
    num_classes = int(max(y.max() for _, y in splits.values())) + 1
    if num_classes < 2:
        raise ValueError("y_train must hold at least two classes, got only [0]")
    for part, (X, y) in splits.items():
        if X.shape[1] != num_features:
            raise ValueError(
                f"X_{part} has {X.shape[1]} features but X_train has {num_features}"
            )
        missing = sorted(set(range(num_classes)) - set(y.tolist()))
        if missing:
            raise ValueError(
                f"y_{part} misses classes {missing} of 0..{num_classes - 1}; "
                "every split needs every class"
            )
    (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = splits.values()
    return Dataset(X_tr, y_tr, X_va, y_va, X_te, y_te, num_classes, name)


def make_two_moons(
    num_points: int = 1000,
    noise: float = 0.2,
    seed: int = 0,
    split: Sequence[float] = DEFAULT_SPLIT,
) -> Dataset:
    """scikit-learn's two interleaving half circles, split 700 / 200 / 100.

    Examples
    --------
    >>> data = make_two_moons()
    >>> data.sizes, data.num_classes, data.X_train.dtype
    ((700, 200, 100), 2, dtype('float32'))
    """
    from sklearn.datasets import make_moons

    num_points, noise = _check_size_noise(num_points, noise)
    seed = _check_seed(seed)
    X, y = make_moons(n_samples=num_points, noise=noise, random_state=seed)
    return from_arrays(X, y, split=split, seed=seed, name="moons")


def make_circles(
    num_points: int = 1000,
    noise: float = 0.1,
    factor: float = 0.5,
    seed: int = 0,
    split: Sequence[float] = DEFAULT_SPLIT,
) -> Dataset:
    """scikit-learn's two concentric circles."""
    from sklearn.datasets import make_circles as sk_make_circles

    num_points, noise = _check_size_noise(num_points, noise)
    seed = _check_seed(seed)
    X, y = sk_make_circles(
        n_samples=num_points, noise=noise, factor=factor, random_state=seed
    )
    return from_arrays(X, y, split=split, seed=seed, name="circles")


def make_digits(seed: int = 0, split: Sequence[float] = DEFAULT_SPLIT) -> Dataset:
    """scikit-learn's 8x8 handwritten digits: 1797 points, 64 features, 10 classes.

    Pixel values are scaled from 0-16 to 0-1.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    return from_arrays(digits.data / 16.0, digits.target, split, seed, name="digits")


def _check_size_noise(num_points: Any, noise: Any) -> tuple[int, float]:
    if isinstance(num_points, bool) or not isinstance(num_points, numbers.Integral):
        raise TypeError(f"num_points must be an integer, got {num_points!r}")
    if num_points < 10:
        raise ValueError(f"num_points must be >= 10, got {num_points}")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
        raise TypeError(f"noise must be a number, got {noise!r}")
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    return int(num_points), float(noise)


DATASETS = {"moons": make_two_moons, "circles": make_circles, "digits": make_digits}
"""Named data sets the command line offers."""


def load_dataset(name: str, seed: int = 0) -> Dataset:
    """One of :data:`DATASETS` with its default settings."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    dataset: Dataset = DATASETS[name](seed=seed)  # type: ignore[operator]
    return dataset
