"""Shared fixtures: small data sets and spaces that keep tests fast."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def moons():
    from automl_lib.data import make_two_moons

    return make_two_moons()
