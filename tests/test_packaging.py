"""The conda environment and pyproject.toml list the same packages."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent
# conda-forge names where they differ from PyPI's
CONDA_NAMES = {"torch": "pytorch", "dask": "dask"}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ]", requirement.strip(), maxsplit=1)[0].lower()


def _pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for requirements in project["optional-dependencies"].values():
        for requirement in requirements:
            names.add(_name(requirement))
            if requirement.startswith("dask[distributed]"):
                names.add("distributed")
    return {CONDA_NAMES.get(n, n) for n in names}


def test_environment_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {
        "python",
        "pip",
    }
    assert conda == _pyproject_packages()


def test_environment_installs_the_package_itself():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert pip_sections and any(
        line.replace(" ", "") in ("-e.", ".", "-e.[notebooks]")
        for line in pip_sections[0]
    )


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make search" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_makefile_pins_torch():
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()
