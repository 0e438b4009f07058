"""The bci app's change detector on the running error: quiet on a stationary error, rings
on a jump and stops once the slow baseline has followed the new level, only past windows
enter, bad arguments raise."""

import math
import random

import pytest

from spikegrad.apps import bci as app
from spikegrad.apps.bci import stream
from spikegrad.apps.bci.detector import ErrorJumpBoost


def _noisy(rng, level, n):
    """``n`` windows of (sq_error, sq_target) whose unexplained fraction is ``level``,
    each sum a chi-square of 25 samples (a 25-bin window) around its mean."""
    out = []
    for _ in range(n):
        tgt = sum(rng.gauss(0, 1) ** 2 for _ in range(25))
        err = level * sum(rng.gauss(0, 1) ** 2 for _ in range(25))
        out.append((err, tgt))
    return out


def test_stationary_error_raises_no_alarm_and_a_jump_raises_one_that_ends():
    rng = random.Random(0)
    det = ErrorJumpBoost(fast=20, slow=300, threshold=2.0, boost=10.0, warmup=20)
    factors = [det.update(e, t) for e, t in _noisy(rng, 0.25, 600)]
    assert set(factors) == {1.0} and det.alarms == 0
    # the unexplained fraction triples: the fast average passes twice the baseline within
    # a few fast time constants, and the factor is the boost
    after = [det.update(e, t) for e, t in _noisy(rng, 0.75, 2000)]
    first = after.index(10.0)
    assert first < 3 * 20
    # the slow baseline follows the new level: the alarm ends within a few slow time
    # constants (ln(3 / 2) * 300 updates for the noiseless averages) and stays off
    last = max(i for i, f in enumerate(after) if f == 10.0)
    assert math.log(1.5) * 300 * 0.5 < last < 3 * 300
    assert set(after[last + 1:]) == {1.0}


def test_near_rest_windows_do_not_divide_by_almost_nothing():
    det = ErrorJumpBoost(fast=5, slow=50, threshold=2.0, boost=4.0)
    for _ in range(100):
        det.update(1.0, 4.0)
    # a window at rest: tiny target and error, the same fraction over the averages
    assert det.update(1e-9, 1e-12) == 1.0


def test_boost_one_is_off_and_warmup_holds_the_alarm():
    det = ErrorJumpBoost(fast=2, slow=10, threshold=1.5, boost=1.0)
    det.update(1.0, 1.0)
    assert det.update(100.0, 1.0) == 1.0 and det.alarm            # rings, factor 1
    det = ErrorJumpBoost(fast=2, slow=10, threshold=1.5, boost=3.0, warmup=5)
    assert [det.update(e, 1.0) for e in (1.0, 100.0, 100.0)] == [1.0, 1.0, 1.0]
    state = det.state_dict()
    again = ErrorJumpBoost(fast=2, slow=10, threshold=1.5, boost=3.0, warmup=5)
    again.load_state_dict(state)
    assert [again.update(100.0, 1.0) for _ in range(4)] == \
        [det.update(100.0, 1.0) for _ in range(4)]


@pytest.mark.parametrize("kwargs, match", [
    (dict(fast=10, slow=10), "fast < slow"), (dict(fast=0.5, slow=10), "fast < slow"),
    (dict(threshold=1.0), "threshold"), (dict(boost=0.5), "boost"),
    (dict(warmup=-1), "warmup"), (dict(fast=math.nan), "fast")])
def test_bad_arguments_raise(kwargs, match):
    args = dict(dict(fast=2, slow=10, threshold=2.0, boost=3.0), **kwargs)
    with pytest.raises(ValueError, match=match):
        ErrorJumpBoost(**args)
    with pytest.raises(ValueError, match="sq_error"):
        ErrorJumpBoost(2, 10, 2.0, 3.0).update(-1.0, 1.0)


def test_adaptation_is_causal_and_boost_one_is_the_constant_rate_pass():
    """The factor of an update comes from windows up to it: a change at bin k leaves every
    prediction before k as it was; boost 1 decodes as the boosted pass does up to its first
    alarm, and differently after it."""
    import torch
    from spikegrad.apps.bci.train import build_decoder
    from spikegrad.data import simulate_cortex

    # a low threshold so that this short stream rings at all
    c = app.validate(app.Config(n_channels=16, hidden=12, update_every=10, adapt_boost=5.0,
                                adapt_threshold=1.05, adapt_fast_s=0.2, adapt_slow_s=2.0,
                                lr_adapt=1e-3))
    d = simulate_cortex(8.0, 16, seed=1)
    torch.manual_seed(0)
    dec = build_decoder(c, d.counts, d.velocity)
    pred, alarms = stream.adapt_online(c, dec, d.counts, d.velocity)
    assert pred.shape == d.velocity.shape and alarms.shape == (d.counts.shape[0],)
    assert torch.isfinite(pred).all()
    k = 1000
    later = d.counts.clone()
    later[k:] = 0.0
    pred2, alarms2 = stream.adapt_online(c, dec, later, d.velocity)
    assert torch.equal(pred[:k], pred2[:k]) and torch.equal(alarms[:k], alarms2[:k])
    assert not torch.equal(pred[k:], pred2[k:])
    assert bool(alarms.any())
    first = int(alarms.nonzero()[0])
    boosted_from = first + c.update_every                # the window after the alarm's
    off = app.validate(app.Config(**dict(vars(c), adapt_boost=1.0)))
    p_off, _ = stream.adapt_online(off, dec, d.counts, d.velocity)
    assert torch.equal(pred[:boosted_from], p_off[:boosted_from])
    assert not torch.equal(pred[boosted_from:], p_off[boosted_from:])


def test_adam_restarts_when_the_alarm_starts_and_only_then():
    """adapt_reset_adam clears Adam's moments at an alarm's onset. With boost 1 the detector
    still rings but changes no rate, so the reset is the only difference: the pass decodes
    as without it up to the first update with fresh moments, and differently after it."""
    import torch
    from spikegrad.apps.bci.train import build_decoder
    from spikegrad.data import simulate_cortex

    c = app.validate(app.Config(n_channels=16, hidden=12, update_every=10, adapt_boost=1.0,
                                adapt_threshold=1.05, adapt_fast_s=0.2, adapt_slow_s=2.0,
                                lr_adapt=1e-3))
    reset = app.validate(app.Config(**dict(vars(c), adapt_reset_adam=True)))
    d = simulate_cortex(8.0, 16, seed=1)
    torch.manual_seed(0)
    dec = build_decoder(c, d.counts, d.velocity)
    p_off, alarms = stream.adapt_online(c, dec, d.counts, d.velocity)
    p_on, alarms_on = stream.adapt_online(reset, dec, d.counts, d.velocity)
    assert bool(alarms.any())
    first = int(alarms.nonzero()[0])
    assert torch.equal(alarms[:first + c.update_every], alarms_on[:first + c.update_every])
    after = first + c.update_every             # the first update with fresh moments
    assert torch.equal(p_on[:after], p_off[:after])
    assert not torch.equal(p_on[after:], p_off[after:])
