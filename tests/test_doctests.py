"""Every ``>>>`` example in the package's docstrings runs as shown."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import livetune_rl
import livetune_rl.envs

MODULES = sorted(
    info.name
    for package in (livetune_rl, livetune_rl.envs)
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    if not info.name.startswith("livetune_rl._proto"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
