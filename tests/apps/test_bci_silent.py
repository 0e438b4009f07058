"""The bci app's silent-channel compensation: causal flags after silent_bins without a count,
live channels scaled to the full array's drive, and in the online adaptation a no-op while
every channel fires."""

import pytest
import torch

from spikegrad.apps import bci as app
from spikegrad.apps.bci import stream
from spikegrad.apps.bci.silent import compensate_silent, silent_channels


def test_a_channel_is_silent_after_silent_bins_without_a_count_and_not_before():
    counts = torch.ones(20, 4)
    counts[5:, 1] = 0.0            # dies at bin 5
    counts[8:11, 2] = 0.0          # pauses for 3 bins only
    s = silent_channels(counts, 4)
    # bins 5..8 empty: bin 9 is the first whose 4 bins before it had no count
    assert s[:, 1].tolist() == [False] * 9 + [True] * 11
    assert not s[:, 2].any() and not s[:, 0].any() and not s[:, 3].any()
    # causal: the future does not move a flag
    later = counts.clone()
    later[12:] = 0.0
    assert torch.equal(silent_channels(later, 4)[:12], s[:12])
    # nothing is silent before silent_bins bins have been seen
    assert not silent_channels(torch.zeros(6, 3), 4)[:4].any()


def test_live_channels_carry_the_full_arrays_drive():
    counts = torch.tensor([[2.0, 1.0, 3.0, 0.0]] * 10)
    out, silent = compensate_silent(counts, 3)
    assert torch.equal(out[:3], counts[:3])                     # nothing flagged yet
    assert silent[3:, 3].all() and not silent[:, :3].any()
    assert torch.allclose(out[3:], counts[3:] * 4 / 3)          # N / N_alive
    assert torch.equal(out[3:, 3], torch.zeros(7))
    # all silent: zeros, no division by zero
    out0, _ = compensate_silent(torch.zeros(5, 2), 2)
    assert torch.equal(out0, torch.zeros(5, 2))
    with pytest.raises(ValueError, match="silent_bins must be an int >= 1"):
        silent_channels(counts, 0)
    with pytest.raises(ValueError, match=r"counts must be \[T, N\]"):
        silent_channels(counts[0], 2)


def test_adaptation_with_compensation_changes_only_what_follows_a_dead_channel():
    from spikegrad.apps.bci.train import build_decoder
    from spikegrad.data import Disruption, simulate_cortex

    c = app.validate(app.Config(n_channels=16, hidden=12, update_every=10, lr_adapt=1e-3))
    on = app.validate(app.Config(**dict(vars(c), silent_channel_s=2.0)))
    d = simulate_cortex(8.0, 16, seed=1, disruptions=[Disruption(4.0, dropout=0.25)])
    torch.manual_seed(0)
    dec = build_decoder(c, d.counts, d.velocity)
    p_off, _ = stream.adapt_online(c, dec, d.counts, d.velocity)
    p_on, _ = stream.adapt_online(on, dec, d.counts, d.velocity)
    flags = silent_channels(d.counts, 500)
    # only the dead channels are flagged (no live one pauses 2 s here), at most 500 bins
    # after the event at bin 1000 (sooner if their last count came before it)
    assert torch.equal(flags.any(0), ~d.truth.alive[1])
    first = int(flags.any(1).nonzero()[0])
    assert 1000 < first <= 1500
    assert torch.equal(p_on[:first], p_off[:first])
    assert not torch.allclose(p_on[first:], p_off[first:])
