"""How high can any decoder stand after the bci app's disruption? An oracle for issue 20's
recovery floor (90 % of the pre-event R² within 60 s, for good, in 20 s windows).

    python scripts/bci_oracle.py --seeds 0,1,2            # about 2-3 min per seed, 1 core

For each seed this trains the app's BPTT decoder exactly as ``spikegrad run bci`` does (the
default config), builds the same disruption streams, and fine-tunes a copy of the decoder
offline, knowing the disruption: ``--steps`` more SG-BPTT steps (Adam, ``--lr``) on the whole
training part as it would have been recorded after the event (dropout: the channels that
fall silent in the stream zeroed; rotation: the training recording simulated again with the
preferred directions rotated from its first bin, same velocity). That decoder has seen 225 s
of the changed population many times over, where online e-prop has seen the stream once, so
its sliding R² after the event is a ceiling for any recalibration of this network. Printed
per seed and disruption: the frozen decoder's R² before the event (the 90 % level is taken
from it), the oracle's R² in the windows wholly after the event (mean, minimum), and its time
to 90 % for good and its first window at 90 % (the app's definitions,
:func:`spikegrad.apps.bci.stream.time_to_recover` and ``time_to_regain``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math

import torch

from spikegrad.apps.bci import stream as st
from spikegrad.apps.bci.config import Config, disruptions
from spikegrad.apps.bci.run import load_data
from spikegrad.apps.bci.train import build_decoder, train_bptt
from spikegrad.data import Disruption, simulate_cortex
from spikegrad.train import seed_everything


def oracle_training_counts(c: Config, kind: str, counts, stream_counts, event: int):
    """The training part's counts ``[T, N]`` as recorded after the event of ``kind``."""
    if kind == "dropout":
        dead = stream_counts[event:].sum(0) == 0           # silent for the whole post-event
        out = counts.clone()
        out[:, dead] = 0.0
        return out
    if kind == "rotation":
        dt = c.dt_ms * 1e-3
        d = simulate_cortex(c.duration_s, c.n_channels, dt=dt, seed=c.seed,
                            disruptions=[Disruption(dt, rotation_deg=c.rotation_deg)])
        return d.train[0]
    raise ValueError(f"no oracle for disruption {kind!r} (dropout, rotation)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=300, help="fine-tuning SG-BPTT steps")
    ap.add_argument("--lr", type=float, default=1e-3, help="fine-tuning Adam rate")
    args = ap.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        c = Config(seed=seed, progress=False)
        seed_everything(c.seed, deterministic=c.deterministic)
        data = load_data(c)
        (ctr, vtr), _ = data.train, data.test
        torch.manual_seed(c.seed)                          # the app's initial weights
        init = build_decoder(c, ctr, vtr).state_dict()
        frozen = build_decoder(c, ctr, vtr)
        frozen.load_state_dict(init)
        seed_everything(c.seed, deterministic=c.deterministic)
        train_bptt(c, frozen, ctr, vtr, None, False, False)
        for kind in disruptions(c):
            sd = st.disruption_data(c, kind, data)
            dt = sd.dt
            event = int(round(c.disruption_pre_s / dt))
            window = int(round(c.r2_window_s / dt))
            stride = int(round(1.0 / dt))
            last = int(round(60.0 / dt))
            oracle = copy.deepcopy(frozen)
            seed_everything(c.seed, deterministic=c.deterministic)
            train_bptt(dataclasses.replace(c, bptt_steps=args.steps, lr_bptt=args.lr), oracle,
                       oracle_training_counts(c, kind, ctr, sd.counts, event), vtr, None,
                       False, False)
            cf = st.sliding_r2(frozen.predict(sd.counts), sd.velocity, window, stride)
            ends = cf[:, 0]
            pre = float(cf[(ends <= event) & (ends - window >= event - last), 1].mean())
            co = st.sliding_r2(oracle.predict(sd.counts), sd.velocity, window, stride)
            after = co[:, 0] - window >= event
            rec = st.time_to_recover(co, event, window, 0.9 * pre, dt)
            first = st.time_to_regain(co, event, window, 0.9 * pre, dt)
            print(f"seed {seed} {kind}: frozen R² before {pre:.3f} (90 %: {0.9 * pre:.3f}); "
                  f"oracle after the event: mean {float(co[after, 1].mean()):.3f}, min "
                  f"{float(co[after, 1].min()):.3f}; to 90 % for good "
                  f"{math.inf if rec is None else rec:.0f} s, first window at 90 % "
                  f"{math.inf if first is None else first:.0f} s", flush=True)


if __name__ == "__main__":
    main()
