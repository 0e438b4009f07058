"""How noisy is the bci app's recovery time? The measurement behind ``disruption_streams``.

    python scripts/bci_recovery_noise.py --seeds 0,1,2      # about 6-10 min per seed, 1 core

For each seed this trains the app's BPTT decoder as ``spikegrad run bci`` does (default
config), then runs ``--streams`` undisrupted streams (new recordings of the population, the
same generators as the app's disruption streams, no event) through the online adaptation
(:func:`spikegrad.apps.bci.stream.adapt_online`) and the same number of dropout streams
through the frozen decoder. Printed per seed:

* the spread of one ``r2_window_s`` window's R² about its stream's mean (undisrupted), and
  the spread of the windows pooled over all streams (:func:`stream.pooled_sliding_r2`);
* false failures: with a pseudo-event at ``disruption_pre_s`` and no disruption, how often
  "back at 90 % (and 95 %) of the R² before, for good, within 60 s" fails, on one stream and
  pooled over every subset of 4 streams;
* false recoveries: how often the frozen decoder after the dropout is timed as back at 90 %
  for good (at any time, and within 60 s), on one stream and pooled over all streams.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from spikegrad.apps.bci import stream as st
from spikegrad.apps.bci.config import Config
from spikegrad.apps.bci.run import load_data
from spikegrad.apps.bci.train import build_decoder, train_bptt
from spikegrad.data import simulate_cortex
from spikegrad.train import seed_everything


def _level(curve, event: int, window: int, last: int) -> float:
    ends = curve[:, 0]
    return float(curve[(ends <= event) & (ends - window >= event - last), 1].mean())


def _fails(curve, event, window, last, frac, dt) -> bool:
    rec = st.time_to_recover(curve, event, window, frac * _level(curve, event, window, last),
                             dt)
    return rec is None or rec > 60.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--streams", type=int, default=8)
    args = ap.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        c = Config(seed=seed, progress=False)
        seed_everything(c.seed, deterministic=c.deterministic)
        data = load_data(c)
        (ctr, vtr) = data.train
        torch.manual_seed(c.seed)
        init = build_decoder(c, ctr, vtr).state_dict()
        dec = build_decoder(c, ctr, vtr)
        dec.load_state_dict(init)
        seed_everything(c.seed, deterministic=c.deterministic)
        train_bptt(c, dec, ctr, vtr, None, False, False)
        dt = data.dt
        window, stride = int(round(c.r2_window_s / dt)), int(round(1.0 / dt))
        event, last = int(round(c.disruption_pre_s / dt)), int(round(60.0 / dt))
        quiet, frozen = [], []
        for r in range(args.streams):
            sd = simulate_cortex(c.disruption_pre_s + c.disruption_post_s, c.n_channels, dt=dt,
                                 seed=seed, train_fraction=0.0,
                                 recording_seed=st.stream_seed(seed, r))
            quiet.append((st.adapt_online(c, dec, sd.counts, sd.velocity)[0], sd.velocity))
            dd = st.disruption_data(c, "dropout", data, r)
            frozen.append((dec.predict(dd.counts), dd.velocity))
        singles = [st.sliding_r2(p, y, window, stride) for p, y in quiet]
        res = torch.cat([cv[:, 1] - cv[:, 1].mean() for cv in singles])
        pooled = st.pooled_sliding_r2(*zip(*quiet), window, stride)
        print(f"seed {seed}: one {c.r2_window_s:g} s window's R² sd {float(res.std()):.4f} "
              f"(undisrupted e-prop, {len(quiet)} streams); pooled over them: sd "
              f"{float(pooled[:, 1].std()):.4f}")
        for frac in (0.9, 0.95):
            one = sum(_fails(cv, event, window, last, frac, dt) for cv in singles)
            subsets = list(itertools.combinations(range(len(quiet)), 4))
            four = sum(_fails(st.pooled_sliding_r2(*zip(*[quiet[i] for i in sub]), window,
                                                   stride), event, window, last, frac, dt)
                       for sub in subsets)
            print(f"  no disruption, not back at {frac:.0%} for good within 60 s: one stream "
                  f"{one}/{len(singles)}, pooled over 4: {four}/{len(subsets)}")
        fs = [st.sliding_r2(p, y, window, stride) for p, y in frozen]
        times = [st.time_to_recover(cv, event, window, 0.9 * _level(cv, event, window, last),
                                    dt) for cv in fs]
        fp = st.pooled_sliding_r2(*zip(*frozen), window, stride)
        tp = st.time_to_recover(fp, event, window, 0.9 * _level(fp, event, window, last), dt)
        print(f"  frozen after the dropout, back at 90 % for good: one stream "
              f"{sum(t is not None for t in times)}/{len(times)} "
              f"({sum(t is not None and t <= 60 for t in times)} within 60 s; times "
              f"{[t for t in times if t is not None]}), pooled: {tp}")


if __name__ == "__main__":
    main()
