import numpy as np
import pytest
import torch

from automl_lib import data as data_module
from automl_lib.data import from_arrays, make_circles, make_digits, make_two_moons


def test_two_moons_shapes_and_types():
    data = make_two_moons()
    assert data.sizes == (700, 200, 100)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.num_classes == 2 and data.num_features == 2


def test_splits_do_not_overlap():
    data = make_two_moons()
    X_test, _ = data.test_split()
    rows = [tuple(x) for x in np.concatenate([data.X_train, data.X_val, X_test])]
    assert len(set(rows)) == 1000


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = make_two_moons(seed=1), make_two_moons(seed=1), make_two_moons(seed=2)
    assert np.array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, c.X_train)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_building_data_leaves_global_random_state_alone():
    np.random.seed(123)
    torch.manual_seed(123)
    numpy_state = np.random.get_state()[1].copy()
    torch_state = torch.random.get_rng_state().clone()
    make_two_moons(seed=7)
    make_circles(seed=7)
    assert np.array_equal(numpy_state, np.random.get_state()[1])
    assert torch.equal(torch_state, torch.random.get_rng_state())


def test_other_data_sets():
    digits = make_digits()
    assert digits.num_classes == 10 and digits.num_features == 64
    assert digits.X_train.max() <= 1.0
    assert make_circles().num_classes == 2


def test_user_arrays_and_all_points():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    y = (X[:, 0] > 0).astype(int)
    data = from_arrays(X, y, split=(0.6, 0.2, 0.2))
    assert data.sizes == (60, 20, 20)
    X_all, y_all = data.all_points()
    assert X_all.shape == (100, 3) and sorted(y_all) == sorted(y)


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.array([[0.0, np.nan]] * 10), np.arange(10) % 2, "non-finite"),
        (np.zeros((10, 2)), np.zeros(10, dtype=int), "two classes"),
        (np.zeros((10, 2)), np.arange(10) % 2 * 1.0, "integer class labels"),
        (np.zeros((10, 2)), np.eye(2)[np.arange(10) % 2], "one-hot"),
        (np.zeros((10, 2)), np.arange(9) % 2, "9 labels"),
        (np.zeros(10), np.arange(10) % 2, "2-D"),
    ],
)
def test_bad_arrays_are_refused(X, y, message):
    with pytest.raises((ValueError, TypeError), match=message):
        from_arrays(X, y)


def test_split_that_leaves_a_part_empty_or_missing_a_class():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="empty"):
        from_arrays(X, np.arange(10) % 2, split=(0.98, 0.01, 0.01))
    with pytest.raises(ValueError, match="misses classes"):
        from_arrays(X, np.array([0] * 9 + [1]), split=(0.5, 0.3, 0.2))


def test_bad_generator_settings():
    with pytest.raises(ValueError, match="noise"):
        make_two_moons(noise=-1)
    with pytest.raises(TypeError, match="num_points"):
        make_two_moons(num_points=10.5)
    with pytest.raises(ValueError, match="dataset"):
        data_module.load_dataset("mnist")
