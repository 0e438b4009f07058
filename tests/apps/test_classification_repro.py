"""Reproductions of the issue's floors with the shipped presets (minutes each: `make test-all`)."""

import pytest

from spikegrad.apps import classification as app
from spikegrad.apps.config import apply_overrides


def _run(tmp_path, dataset):
    cfg = apply_overrides(app.Config(), [f"dataset={dataset}", "progress=false"])
    return app.run(cfg, tmp_path).metrics


def test_digits_default_reaches_095(tmp_path):
    # the default config (`make demo`); fast enough for the default suite
    assert _run(tmp_path, "digits")["test_accuracy"] >= 0.95


@pytest.mark.slow
def test_randman_stork_setup_reaches_090(tmp_path):
    assert _run(tmp_path, "randman")["test_accuracy"] >= 0.90


@pytest.mark.slow
def test_mnist1d_reaches_070(tmp_path):
    assert _run(tmp_path, "mnist1d")["test_accuracy"] >= 0.70
