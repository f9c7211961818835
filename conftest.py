"""Make the notebook options in pyproject.toml work from any folder.

pytest reads ``--nbval-sanitize-with notebooks/sanitize.cfg`` relative to the
folder it was started in; resolve it against the repository instead, so that
``pytest PATH/notebooks`` from elsewhere runs the same checks.
"""

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    path = getattr(config.option, "nbval_sanitize_with", None)
    if path and not Path(path).exists():
        config.option.nbval_sanitize_with = str(config.rootpath / path)
