import pytest

import spikegrad as sg


@pytest.fixture
def relaxed(monkeypatch):
    """Replace the Heaviside by the surrogate's smooth primitive in every spiking step (the
    'sigmoid' surrogate's primitive sigmoid(beta x) has exactly the surrogate's derivative), so
    autograd of the relaxed network can be checked against its finite differences."""
    from spikegrad.functional import adaptation, dendrite, lif

    def smooth(x, surrogate):
        return sg.surrogate.get(surrogate).smooth(x)

    for mod in (lif, adaptation, dendrite):
        monkeypatch.setattr(mod, "spike", smooth)
