import pytest
import torch

from spikegrad.kernels import parallel


@pytest.fixture(autouse=True)
def splitting_always_pays(monkeypatch):
    """A test that sets several threads tests the split kernels: whether they split must not
    depend on what else the machine runs (the suite runs beside other processes, and under a
    load the kernels stop splitting). Tests of that judgement patch it themselves."""
    monkeypatch.setattr(parallel, "splitting_pays", lambda: True)


@pytest.fixture
def threads(monkeypatch):
    """``threads(k)`` forces the kernels onto k threads even for small inputs."""
    def use(k):
        monkeypatch.setattr(parallel, "MIN_WORK_PER_THREAD", 1)
        monkeypatch.setattr(torch, "get_num_threads", lambda: k)
    return use
