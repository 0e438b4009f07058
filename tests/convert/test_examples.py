"""The examples in the docstrings of spikegrad.convert run and print what they show."""

import doctest
import importlib

import pytest

MODULES = ["spikegrad.convert", "spikegrad.convert.batchnorm", "spikegrad.convert.conversion",
           "spikegrad.convert.inputs", "spikegrad.convert.maxpool", "spikegrad.convert.qcfs",
           "spikegrad.convert.scales"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), raise_on_error=False)
    assert result.failed == 0 and result.attempted >= 1, result
