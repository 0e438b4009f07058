"""README results tables from multi-seed sweeps: ``make results [RESULTS_ARGS=...]``.

Every row of the README's two results tables (``## Results`` and ``### The other
applications``) is a spec below (:data:`ROWS`): the app, its ``--set`` overrides (exactly
the command the README shows) and one template per table cell. For each row this script
runs ``spikegrad sweep APP --seeds 0,1,2,3,4 --out results/<id> --set ... --resume-or-start``
(finished sweeps are skipped, an interrupted one continues) and then rewrites the tables
between ``<!-- results:<table>:begin -->`` and ``<!-- results:<table>:end -->`` in
README.md: every number as median (min-max) over the seeds, wall time as the median, and a
line naming the commit, processor, torch version, thread count and date of the runs.

A row whose sweeps have not all finished (or were run with other overrides or another
config) shows "not measured yet": a number in these tables is always one that its command
produced.

    python scripts/results.py                      # run what is missing, render
    python scripts/results.py --only demo,regression --seeds 5   # other rows keep their lines
    python scripts/results.py --render-only        # render from the finished sweeps
    python scripts/results.py --list               # row ids and their commands

Template fields: ``{key:spec}`` a metric of the row's sweep (``spec``: a format spec; a
trailing ``k`` prints thousands as ``54.6k``, ``n`` counts the seeds where it is true);
``{src/key:spec}`` the same from another sweep (``Row.uses``); ``{cfg.field}`` a value of
the run's config (``:upper`` for a word in capitals); ``{wall}`` the median wall time; ``{cmd}`` the command. Metric keys are
those of each seed's ``metrics.json``, plus the tables some apps write next to it:
``tbptt.k<K>.<key>`` (``tbptt_table.json``), ``compare.<rule>.<key>`` (``compare.json``),
``memory.<rule>.T<T>.<key>`` (``memory.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
NOT_MEASURED = "not measured yet"
DEFAULT_SEEDS = "5"


# --- specs -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Sweep:
    """One command over the seeds, in ``results/<id>/``."""
    id: str
    app: str
    sets: Tuple[str, ...] = ()
    # the whole command's time: regression's wall_seconds leaves out its comparisons
    wall_key: str = "wall_seconds"
    # overrides that shrink the run but keep its metric names (tests/scripts/test_results.py)
    tiny: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Row:
    id: str
    table: str
    sweep: Sweep
    cells: Tuple[str, ...]
    # other sweeps the templates read, as {prefix/key}: prefix -> sweep
    uses: Tuple[Tuple[str, Sweep], ...] = ()
    # per-seed quantities computed before the statistics: name -> (function, its metric keys)
    derive: Tuple[Tuple[str, Callable[..., float], Tuple[str, ...]], ...] = ()
    # metrics an app writes only when the run's outcome allows it (a seed without one is left
    # out of that number and the cell says how many seeds it is over)
    optional: Tuple[str, ...] = ()
    shown: Optional[str] = None  # the command as the README shows it, if not the sweep's own

    def sweeps(self) -> List[Sweep]:
        return [self.sweep] + [s for _, s in self.uses]


TABLES = {
    "classification": ("| task (command) | test accuracy | wall time | reference |",
                       "|---|---|---|---|"),
    "apps": ("| app: task | result | wall time |", "|---|---|---|"),
}

_ACC = "{test_accuracy:.3f}"
S_DEMO = Sweep("demo", "classification", tiny=("epochs=1",))
S_RANDMAN = Sweep("randman", "classification", ("dataset=randman",),
                  tiny=("epochs=1", "hidden=16"))
S_RANDMAN200 = Sweep("randman-200", "classification", ("dataset=randman", "epochs=200"),
                     tiny=("epochs=1", "hidden=16"))
S_MNIST1D = Sweep("mnist1d", "classification", ("dataset=mnist1d",),
                  tiny=("epochs=1", "hidden=16"))
_NO_COMPARE = ("compare_tbptt=", "compare_clipping=false")
_TINY_REG = ("n_steps=300", "steps=2", "hidden=10", "n_inputs=10", "progress=false")
S_REG = Sweep("regression", "regression", wall_key="run_seconds", tiny=_TINY_REG)
S_REG_ALIF = Sweep("regression-alif", "regression", ("neuron=alif",) + _NO_COMPARE,
                   wall_key="run_seconds", tiny=_TINY_REG)
S_REG_FILTER = Sweep("regression-filter", "regression", ("task=filter",) + _NO_COMPARE,
                     wall_key="run_seconds", tiny=_TINY_REG)
S_REG_SPARSE = Sweep("regression-sparsity", "regression",
                     ("sparsity_weight=1e-3", "target_rate_hz=10"), wall_key="run_seconds",
                     tiny=_TINY_REG)
S_EPROP = Sweep("eprop", "regression",
                ("learning=eprop_symmetric", "steps=200", "compare=bptt,eprop_random",
                 "memory_lengths=500,1000,2000,4000") + _NO_COMPARE,
                wall_key="run_seconds", tiny=("n_steps=100", "steps=2", "hidden=10",
                                              "n_inputs=10", "progress=false"))
_TINY_CONV = ("epochs=1", "steps=1,8", "direct_steps=1", "hybrid_epochs=1", "calibration=50",
              "max_train=128", "progress=false")
S_CONVERSION = Sweep("conversion", "conversion", tiny=_TINY_CONV)
S_CONVERSION_MLP = Sweep("conversion-mlp", "conversion", ("arch=mlp",), tiny=_TINY_CONV)
S_CONVERSION_1D = Sweep("conversion-mnist1d", "conversion", ("dataset=mnist1d",),
                        tiny=_TINY_CONV)
_TINY_VISION = ("epochs=1", "max_train=128")
S_VISION = Sweep("vision", "vision", tiny=_TINY_VISION)
S_VISION_MLP = Sweep("vision-mlp", "vision", ("arch=mlp",), tiny=_TINY_VISION)
S_VISION_DIGITS = Sweep("vision-digits", "vision", ("dataset=digits",), tiny=_TINY_VISION)
S_CODING = Sweep("coding", "coding", tiny=("epochs=1", "n_train=200", "n_val=100",
                                           "n_test=100", "profile_samples=50"))
S_CONSTRAINTS = Sweep("constraints", "constraints", tiny=(
    "epochs=1", "n_train=200", "n_eval=100", "threshold_epochs=1", "threshold_seeds=1",
    "rm_epochs=1", "rm_train=100", "rm_samples=100", "betas=1,10", "sparsity_weights=0,0.001"))
S_ONCHIP = Sweep("onchip", "onchip", tiny=("epochs=1", "max_train=64", "hidden=16",
                                          "drift_repeats=1"))
S_ROBUST = Sweep("robust", "robust", tiny=(
    "epochs=1", "max_train=64", "hidden=16", "eps=0.1", "pgd_steps=2", "autoattack_steps=2", "autoattack_subset=8",
    "mask_subset=16", "mask_steps=3", "mask_restarts=2", "spsa_subset=4", "spsa_steps=2",
    "spsa_samples=2", "ib_betas=", "examples=1", "progress=false"))
S_MOLECULES = Sweep("molecules", "molecules", tiny=(
    "proxy_limit=50", "pretrain_smiles=50", "token_train=50", "token_samples=20", "max_len=40",
    "gen_epochs=1", "gen_hidden=32", "gin_hidden=16", "gin_layers=2", "gin_epochs=2",
    "mlp_hidden=16", "mlp_epochs=2", "token_hidden=16", "token_epochs=2", "a_steps=2",
    "a_relabel_every=1", "a_relabel=8", "b_steps=3", "a_batch=8", "b_batch=8", "eval_every=2",
    "eval_samples=20", "top_k=5", "grid=3"))
S_BIOPHYSICS = Sweep("biophysics", "biophysics", tiny=(
    "cue_train=64", "cue_test=32", "cue_epochs=1", "xor_train=64", "xor_test=32",
    "xor_epochs=1"))


def _demo_text() -> str:
    # the divergence demo's settings are constants of the app, not of the command
    try:
        from spikegrad.apps.regression import DIVERGENCE_DEMO as d
        return f"{d['optimizer'].upper()} lr {d['lr']:g}", f"grad_clip={d['grad_clip']:g}"
    except Exception:  # rendering needs no working app; the numbers are what matter
        return "SGD", "clipping"


_SGD, _CLIP = _demo_text()
_SURR = ("fast_sigmoid", "sigmoid", "atan")


ROWS: Tuple[Row, ...] = (
    Row("demo", "classification", S_DEMO, (
        "digits, 64 -> {cfg.hidden} LIF -> 10 LIF, rate-coded T={cfg.n_steps}, count CE "
        "(`make demo`)", _ACC, "{wall}",
        "logistic regression 0.969, MLP 0.978 (sklearn on the seed-0 split; fixed text, not "
        "re-measured)")),
    Row("randman", "classification", S_RANDMAN, (
        "Randman, stork example 1 set-up ({cfg.init}-driven init), {cfg.epochs} epochs "
        "({cmd})",
        _ACC + ", val {val_accuracy:.3f}", "{wall}", "stork: 0.963 after 200 epochs")),
    Row("randman-200", "classification", S_RANDMAN200, (
        "Randman, same, {cfg.epochs} epochs ({cmd})",
        _ACC + ", val {val_accuracy:.3f}", "{wall}", "stork: 0.963")),
    Row("mnist1d", "classification", S_MNIST1D, (
        "MNIST-1D, 40 -> {cfg.hidden} -> {cfg.hidden} LIF -> 10 LI, roll augmentation ({cmd})",
        _ACC, "{wall}", "MLP 0.68, GRU 0.91, CNN 0.94 (Greydanus & Kobak)")),

    Row("regression", "apps", S_REG, (
        "{cmd}: e-prop pattern generation, {cfg.n_inputs} Poisson inputs, {cfg.hidden} "
        "recurrent LIF, low-pass readout, T = {cfg.n_steps}, Adam, {cfg.steps} steps",
        "NMSE {nmse:.4f} (full BPTT); TBPTT K = 50 / 100 / 250: {tbptt.k50.nmse:.4f} / "
        "{tbptt.k100.nmse:.4f} / {tbptt.k250.nmse:.4f} (one pass, the gradient cut every K "
        "steps); chunk by chunk (`tbptt_mode=chunks`, the same gradient) "
        "{tbptt.k50.peak_memory_other_mb:.2f} / {tbptt.k100.peak_memory_other_mb:.2f} / "
        "{tbptt.k250.peak_memory_other_mb:.2f} MiB peak allocator memory per step vs "
        "{peak_memory_mb:.2f} MiB for full BPTT and {tbptt.k50.peak_memory_mb:.2f} MiB in one "
        "pass at K = 50; " + _SGD + " without "
        "clipping diverges in {clip_unclipped_diverged:n} seeds, after "
        "{clip_unclipped_steps:.0f} steps; with `" + _CLIP + "` it trains "
        "{clip_clipped_steps:.0f} steps (diverged: {clip_clipped_diverged:n})",
        "{wall}")),
    Row("regression-alif", "apps", S_REG_ALIF, (
        "{cmd}: {cfg.hidden} recurrent ALIF (tau_a {cfg.tau_adapt_ms:g} ms)",
        "NMSE {nmse:.4f} at {firing_rate_hz:.1f} Hz (fused ALIF kernel)", "{wall}")),
    Row("regression-filter", "apps", S_REG_FILTER, (
        "{cmd} (the filter task's preset: T = {cfg.n_steps}, batch {cfg.batch_size}, tau "
        "{cfg.tau_mem_ms:g} ms, lr {cfg.lr:g}, {cfg.steps} steps): recover a smooth signal "
        "from noisy population-coded spikes",
        "held-out NMSE {nmse:.3f} vs {baseline_nmse:.3f} for a ridge decoder of the low-passed "
        "input spikes", "{wall}")),
    Row("regression-sparsity", "apps", S_REG_SPARSE, (
        "{cmd}",
        "{base/firing_rate_hz:.0f} Hz (the `regression` row, no penalty) -> "
        "{firing_rate_hz:.1f} Hz mean rate, NMSE {nmse:.4f}", "{wall}"),
        uses=(("base", S_REG),)),
    Row("eprop", "apps", S_EPROP, (
        "{cmd}",
        "NMSE after {cfg.steps} updates: e-prop symmetric {nmse:.3f}, e-prop random feedback "
        "{compare.eprop_random.nmse:.3f}, BPTT {compare.bptt.nmse:.3f}; per-step memory from "
        "T = 500 to 4000: e-prop {memory.eprop_symmetric.T500.allocator_peak_mb:.2f} -> "
        "{memory.eprop_symmetric.T4000.allocator_peak_mb:.2f} MiB, BPTT "
        "{memory.bptt.T500.allocator_peak_mb:.2f} -> {memory.bptt.T4000.allocator_peak_mb:.2f} "
        "MiB; cosine(e-prop, BPTT) of the hidden-weight gradients "
        "{cosine_eprop_symmetric_vs_bptt_hidden:.2f} (symmetric), "
        "{cosine_eprop_random_vs_bptt_hidden:.2f} (random); RSS growth of a step, median of 3 "
        "in a fresh process, T = 500 -> 4000: e-prop "
        "{memory.eprop_symmetric.T500.rss_growth_mb:.2f} -> "
        "{memory.eprop_symmetric.T4000.rss_growth_mb:.2f} MiB, BPTT "
        "{memory.bptt.T500.rss_growth_mb:.2f} -> {memory.bptt.T4000.rss_growth_mb:.2f} MiB",
        "{wall}")),
    Row("vision", "apps", S_VISION, (
        "`vision`: MNIST-1D, spiking 1-D CNN ({cfg.conv_layers} conv blocks x {cfg.channels} "
        "channels, tdBN, LIF, T = {cfg.n_steps}, current input, {cfg.epochs} epochs)",
        "test {test_accuracy:.3f} with {parameters:.1k} parameters (MNIST-1D paper: CNN 0.94, MLP 0.68); spiking MLP of similar "
        "size ({mlp/parameters:.1k} parameters) on the same budget (`--set arch=mlp`, "
        "{mlp/wall}): {mlp/test_accuracy:.3f}; {synops_per_inference:.1k} synaptic ops per "
        "inference vs {ann_macs_per_inference:.1k} ANN MACs "
        "({synops_spike_input_per_inference:.1k} vs {ann_macs_spike_input_layers:.1k} in the "
        "layers fed by spikes)", "{wall}"),
        uses=(("mlp", S_VISION_MLP),)),
    Row("vision-digits", "apps", S_VISION_DIGITS, (
        "{cmd}: 2-D spiking CNN", "test {test_accuracy:.3f} with {parameters:.1k} parameters",
        "{wall}")),
    Row("coding", "apps", S_CODING, (
        "`coding`: Yin-Yang, same 5-{cfg.hidden}-3 network trained with a rate loss and with a "
        "time-to-first-spike loss",
        "rate code {rate_test_accuracy:.3f}, {rate_spikes_per_sample:.0f} spikes/sample; "
        "first-spike code {temporal_test_accuracy:.3f}, {temporal_spikes_per_sample:.0f} "
        "spikes/sample, decides at step {temporal_decision_latency_steps:.1f}; share of the "
        "output error signal after each neuron's first spike: "
        "{rate_grad_share_after_first_spike:.2f} (rate) vs "
        "{temporal_grad_share_after_first_spike:.2g} (temporal)", "{wall}")),
    Row("constraints", "apps", S_CONSTRAINTS, (
        "`constraints`: sparsity sweep, silent init, surrogate x slope",
        "{cfg.sparsity_penalty:upper} count penalty spans {sparsity_spike_span:.1f}x in "
        "spikes/sample and loses {drop_points:.1f} points at {fewer:.1f}x fewer spikes; a "
        "population started silent (threshold {cfg.silent_factor:g}x) recovers through the "
        "surrogate gradient with fixed thresholds too "
        "({threshold_silent_fixed_no_homeostasis_accuracy:.3f} vs well-initialised "
        "{threshold_well_fixed_accuracy:.3f}, {cfg.threshold_seeds} seeds); trainable "
        "thresholds add {gain_without:.1f} points to it without a homeostatic rate term "
        "({threshold_silent_trainable_no_homeostasis_accuracy:.3f}) and {gain_with:.1f} with "
        "one ({threshold_silent_trainable_accuracy:.3f} vs "
        "{threshold_silent_fixed_accuracy:.3f}); on Randman the worst slope per surrogate "
        "(fast_sigmoid, sigmoid, atan) learns clearly worse ({worst_lo:.2f} to "
        "{worst_hi:.2f} vs best {best_lo:.2f} to {best_hi:.2f}); fast_sigmoid is within 2 "
        "points of its best from slope {surrogate_fast_sigmoid_beta_low:g} to "
        "{surrogate_fast_sigmoid_beta_high:g}, its default slope on that plateau in "
        "{surrogate_fast_sigmoid_default_beta_on_plateau:n} seeds", "{wall}"),
        derive=(
            ("drop_points", lambda d: 100 * d, ("sparsity_drop_at_first_half_point",)),
            ("fewer", lambda r: 1 / r, ("sparsity_first_half_point_spike_ratio",)),
            ("gain_without", lambda g: 100 * g, ("threshold_trainable_gain_without_homeostasis",)),
            ("gain_with", lambda g: 100 * g, ("threshold_trainable_gain_with_homeostasis",)),
            ("worst_lo", lambda *v: min(v), tuple(f"surrogate_{s}_worst_accuracy" for s in _SURR)),
            ("worst_hi", lambda *v: max(v), tuple(f"surrogate_{s}_worst_accuracy" for s in _SURR)),
            ("best_lo", lambda *v: min(v), tuple(f"surrogate_{s}_best_accuracy" for s in _SURR)),
            ("best_hi", lambda *v: max(v), tuple(f"surrogate_{s}_best_accuracy" for s in _SURR)),
        ),
        # written only when some penalty halves the spikes / the betas include the default
        optional=("sparsity_drop_at_first_half_point", "sparsity_first_half_point_spike_ratio",
                  "surrogate_fast_sigmoid_default_beta_on_plateau")),
    Row("conversion", "apps", S_CONVERSION, (
        "`conversion`: digits, 2-D CNN ({cfg.conv_layers} conv blocks, max pooling) converted "
        "from its ReLU ANN (BN folded, {cfg.percentile:g}th-percentile normalisation, IF "
        "neurons, max-pool gate) vs trained directly with surrogate gradients (the vision "
        "recipe) at the same T",
        "ANN {ann_test_accuracy:.3f}; plain conversion at T = 8 / 64 / 256: "
        "{plain_accuracy_T8:.3f} / {plain_accuracy_T64:.3f} / {plain_accuracy_T256:.3f}; "
        "QCFS ({cfg.qcfs_levels} levels) at T = 4 / 8: {qcfs_accuracy_T4:.3f} / "
        "{qcfs_accuracy_T8:.3f} (its ANN {qcfs_ann_test_accuracy:.3f}); hybrid (converted, "
        "fine-tuned at T = {cfg.hybrid_steps}) at T = {cfg.hybrid_steps}: "
        "{hybrid_accuracy_T4:.3f}; direct at T = 1 / 2 / 4 / 8: {direct_accuracy_T1:.3f} / "
        "{direct_accuracy_T2:.3f} / {direct_accuracy_T4:.3f} / {direct_accuracy_T8:.3f}; "
        "smallest T within 1 point of the ANN: plain {plain_steps_to_target:.0f}, QCFS "
        "{qcfs_steps_to_target:.0f}, hybrid {hybrid_steps_to_target:.0f}, direct "
        "{direct_steps_to_target:.0f}, with {plain_synops_to_target:.1k} / "
        "{qcfs_synops_to_target:.1k} / {hybrid_synops_to_target:.1k} / "
        "{direct_synops_to_target:.1k} synaptic ops per inference vs {ann_macs:.1k} ANN MACs; "
        "MLP (`--set arch=mlp`, {mlp/wall}): ANN {mlp/ann_test_accuracy:.3f}, plain at T = 64 "
        "{mlp/plain_accuracy_T64:.3f}, QCFS at T = 8 {mlp/qcfs_accuracy_T8:.3f}", "{wall}"),
        uses=(("mlp", S_CONVERSION_MLP),),
        optional=tuple(f"{m}_{k}_to_target" for m in ("plain", "qcfs", "hybrid", "direct")
                       for k in ("steps", "synops"))),
    Row("conversion-mnist1d", "apps", S_CONVERSION_1D, (
        "{cmd}: 1-D CNN",
        "ANN {ann_test_accuracy:.3f}; at T = 1 / 2 / 4: plain conversion "
        "{plain_accuracy_T1:.3f} / {plain_accuracy_T2:.3f} / {plain_accuracy_T4:.3f}, direct "
        "SG {direct_accuracy_T1:.3f} / {direct_accuracy_T2:.3f} / {direct_accuracy_T4:.3f}, "
        "QCFS {qcfs_accuracy_T1:.3f} / {qcfs_accuracy_T2:.3f} / {qcfs_accuracy_T4:.3f}; plain "
        "at T = 64 / 256: {plain_accuracy_T64:.3f} / {plain_accuracy_T256:.3f}", "{wall}")),
    Row("onchip", "apps", S_ONCHIP, (
        "`onchip`: digits rate-coded over {cfg.n_steps} steps, {cfg.hidden} hidden LIF, "
        "spike-count readout; BPTT next to the online three-factor rule `-lr (e phi(u)) x` in "
        "float and on {cfg.bits}-bit crossbars (naive rounding, stochastic pulses, mixed "
        "precision) and PCM-like devices",
        "BPTT smooth surrogate {bptt_accuracy:.3f}, STE {bptt_ste_accuracy:.3f}; local rule, "
        "symmetric / random feedback: float {local_symmetric_fp32_accuracy:.3f} / "
        "{local_random_fp32_accuracy:.3f}, 4-bit naive {local_symmetric_naive4_accuracy:.3f} / "
        "{local_random_naive4_accuracy:.3f}, 4-bit stochastic pulsed "
        "{local_symmetric_stochastic4_accuracy:.3f} / {local_random_stochastic4_accuracy:.3f}, "
        "4-bit mixed precision {local_symmetric_mixed4_accuracy:.3f} / "
        "{local_random_mixed4_accuracy:.3f} ({local_symmetric_mixed4_pulses_per_sample:.0f} "
        "pulses per sample), PCM-like {local_symmetric_pcm_accuracy:.3f} / "
        "{local_random_pcm_accuracy:.3f}; PCM read 1 day / 1 year after programming "
        "{pcm_drift_1d_comp_accuracy:.3f} / {pcm_drift_1y_comp_accuracy:.3f} with drift "
        "compensation, {pcm_drift_1d_nocomp_accuracy:.3f} / {pcm_drift_1y_nocomp_accuracy:.3f} "
        "without (t0 {pcm_drift_t0_comp_accuracy:.3f})", "{wall}")),
    Row("robust", "apps", S_ROBUST, (
        "`robust`: digits as input current over {cfg.n_steps} steps, {cfg.hidden} hidden LIF, "
        "a Gaussian code read from the readout membranes; five objectives on the same "
        "network, {cfg.epochs} epochs each, inner PGD-{cfg.train_steps} at eps "
        "{cfg.train_eps:g}",
        "clean / PGD-{cfg.pgd_steps} at eps 0.1 / AutoAttack (APGD-CE + APGD-T) at eps 0.1: "
        + "; ".join(f"{title} {{{k}_clean_accuracy:.3f}} / {{{k}_pgd_eps0p1_accuracy:.3f}} / "
                    f"{{{k}_autoattack_accuracy:.3f}}" for k, title in (
                        ("standard", "standard"), ("pgd_at", "PGD-AT"), ("trades", "TRADES"),
                        ("vib", "VIB (beta 1e-3)"), ("robust_ib", "robust IB")))
        + "; every gradient-masking check (more steps, more restarts, eps = 1, white-box "
        "vs transfer, PGD vs SPSA) passes in {standard_masking_passed:n} / "
        "{pgd_at_masking_passed:n} / {trades_masking_passed:n} / {vib_masking_passed:n} / "
        "{robust_ib_masking_passed:n} seeds", "{wall}")),
    Row("molecules", "apps", S_MOLECULES, (
        "`molecules`: de novo design for synthetic accessibility (RDKit's SA score, no "
        "gradient) from a SMILES GRU pretrained on {cfg.pretrain_smiles} MOSES molecules; "
        "arm A follows a token {cfg.token_arch:upper} proxy's gradient through "
        "straight-through Gumbel samples, arm B is REINVENT on the true score",
        "GIN proxy held-out R² {gin_val_r2:.3f} vs Morgan MLP {mlp_val_r2:.3f}; top-"
        "{cfg.top_k} SA prior {prior_topk_sa:.2f}, arm A {arm_a_topk_sa:.2f} (validity "
        "{arm_a_validity:.2f}, {arm_a_oracle_calls:.0f} oracle calls), arm B "
        "{arm_b_topk_sa:.2f} (validity {arm_b_validity:.2f}, uniqueness "
        "{arm_b_uniqueness:.2f}, {arm_b_oracle_calls:.0f} calls); prior validity "
        "{prior_validity:.2f}", "{wall}"),
        # NaN (so not written) where fewer than top_k valid unique molecules were drawn
        optional=("prior_topk_sa", "arm_a_topk_sa", "arm_b_topk_sa", "arm_b_uniqueness")),
    Row("biophysics", "apps", S_BIOPHYSICS, (
        "`biophysics`: cue accumulation (40 channels, 7 cues every 150 ms, "
        "{cfg.cue_delay_ms:g} ms delay, dt {cfg.cue_dt_ms:g} ms; {cfg.cue_hidden} neurons, "
        "half LIF, half ALIF, tau_a {cfg.cue_tau_adapt_ms:g} ms, {cfg.cue_t_ref_ms:g} ms "
        "refractory) and delayed spiking XOR",
        "cue: ALIF {cue_alif_test_accuracy:.3f} vs plain LIF {cue_lif_test_accuracy:.3f}; "
        "XOR: two-branch dendritic net {xor_dendritic_test_accuracy:.3f} vs short-tau LIF "
        "{xor_lif_test_accuracy:.3f}", "{wall}")),
)


def all_sweeps(rows: Sequence[Row] = ROWS) -> List[Sweep]:
    seen: Dict[str, Sweep] = {}
    for r in rows:
        for s in r.sweeps():
            if s.id in seen and seen[s.id] != s:
                raise ValueError(f"two specs for sweep {s.id}")
            seen.setdefault(s.id, s)
    return list(seen.values())


# --- templates -------------------------------------------------------------------------------

FIELD = re.compile(r"\{(?:(?P<src>[a-z]+)/)?(?P<key>[A-Za-z0-9_.]+)(?::(?P<spec>[^}]*))?\}")


def template_keys(row: Row) -> Dict[str, set]:
    """Metric keys each sweep of ``row`` must write: sweep id -> keys (derived names
    replaced by their inputs; cfg, wall and cmd fields left out)."""
    derived = {name: keys for name, _, keys in row.derive}
    prefixes = dict(row.uses)
    need: Dict[str, set] = {s.id: set() for s in row.sweeps()}
    for cell in row.cells:
        for m in FIELD.finditer(cell):
            src, key = m["src"], m["key"]
            sweep = prefixes[src] if src else row.sweep
            if key in ("wall", "cmd") or key.startswith("cfg."):
                continue
            need[sweep.id] |= set(derived.get(key, (key,))) if src is None else {key}
    return need


# --- measurements ----------------------------------------------------------------------------

@dataclasses.dataclass
class Measured:
    sweep: Sweep
    seeds: List[int]
    per_seed: Dict[int, Dict[str, object]]   # flattened metrics
    config: Dict[str, object]                # seed 0's config.json
    provenance: Dict[str, object]


def flatten(seed_dir: Path) -> Dict[str, object]:
    """``metrics.json`` and the tables an app writes beside it, as one dict of scalars."""
    flat: Dict[str, object] = dict(json.loads((seed_dir / "metrics.json").read_text()))

    def load(name):
        path = seed_dir / name
        return json.loads(path.read_text()) if path.exists() else []

    for r in load("tbptt_table.json"):
        flat.update({f"tbptt.k{r['tbptt_k']}.{k}": v for k, v in r.items() if k != "tbptt_k"})
    for r in load("compare.json"):
        flat.update({f"compare.{r['learning']}.{k}": v for k, v in r.items()
                     if k != "learning"})
    for r in load("memory.json"):
        flat.update({f"memory.{r['learning']}.T{r['T']}.{k}": v for k, v in r.items()
                     if k not in ("learning", "T")})
    return {k: v for k, v in flat.items() if isinstance(v, (int, float, bool))}


def expected_config(sweep: Sweep, seed: int = 0) -> Optional[dict]:
    """The config the sweep's command runs today (to tell a measurement of another config)."""
    try:
        from spikegrad.apps import get_app
        from spikegrad.apps.config import apply_overrides, resolve_config
    except ImportError:
        return None
    app = get_app(sweep.app)
    cfg = resolve_config(app, apply_overrides(app.Config(), list(sweep.sets) + [f"seed={seed}"]))
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


_VOLATILE = ("seed", "progress", "log")  # differ between seeds, or do not change a number


def _defaults(sweep: Sweep) -> dict:
    """The app's config defaults: a key that a sweep's saved config lacks (added to the app
    after it ran) is no change while the command runs it at its default."""
    try:
        from spikegrad.apps import get_app
        from spikegrad.apps.report import config_defaults
    except ImportError:
        return {}
    return config_defaults(get_app(sweep.app).Config)


def _config_changes(measured: dict, expected: Optional[dict],
                    defaults: Optional[dict] = None) -> List[str]:
    if expected is None:
        return []
    defaults = defaults or {}
    keys = (set(measured) | set(expected)) - set(_VOLATILE)
    return sorted(k for k in keys if measured.get(k) != expected.get(k)
                  and not (k not in measured and k in defaults and defaults[k] == expected[k]))


def load_sweep(results: Path, sweep: Sweep, check_config: bool = True
               ) -> Tuple[Optional[Measured], str]:
    """The finished sweep in ``results/<id>``, or None and why not."""
    out = results / sweep.id
    try:
        manifest = json.loads((out / "sweep.json").read_text())
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None, "no finished sweep"
    if manifest.get("app") != sweep.app or list(manifest.get("overrides", [])) != list(sweep.sets):
        return None, (f"{out} was run as `{manifest.get('app')} "
                      f"{' '.join(manifest.get('overrides', []))}`, not this row's command")
    seeds = [int(s) for s in summary.get("seeds", [])]
    per_seed = {}
    for s in seeds:
        d = out / f"seed{s}"
        try:
            per_seed[s] = flatten(d)
        except (OSError, json.JSONDecodeError, KeyError):
            return None, f"seed {s} has no readable metrics in {d}"
    if not seeds:
        return None, "no seeds"
    try:
        config = json.loads((out / f"seed{seeds[0]}" / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        config = {}
    if check_config and config:
        changed = _config_changes(config, expected_config(sweep), _defaults(sweep))
        if changed:
            return None, (f"measured with another config than the command runs today "
                          f"({', '.join(changed[:5])}); delete {out} and run it again")
    return Measured(sweep, seeds, per_seed, config, _provenance(out, seeds)), ""


def _provenance(out: Path, seeds: Sequence[int]) -> dict:
    """Commit, torch and threads as each seed recorded them; processor and tree state as
    this script recorded them when it ran the sweep; the date the last seed finished."""
    prov: Dict[str, set] = {"commit": set(), "torch": set(), "threads": set(),
                            "processor": set(), "dirty": set(), "load": set(), "cores": set()}
    for s in seeds:
        try:
            env = json.loads((out / f"seed{s}" / "environment.json").read_text())
            prov["commit"].add(str(env.get("git_commit", "unknown")))
            prov["torch"].add(str(env.get("torch", "unknown")))
            prov["threads"].add(str(env.get("threads", "unknown")))
        except (OSError, json.JSONDecodeError):
            pass
    try:
        sessions = json.loads((out / "provenance.json").read_text())["sessions"]
    except (OSError, json.JSONDecodeError, KeyError):
        sessions = []
    for sess in sessions:
        prov["processor"].add(sess.get("processor", "unknown"))
        prov["dirty"].add(bool(sess.get("dirty")))
        prov["load"].update(x for x in sess.get("load", []) if x is not None)
        if sess.get("cores"):
            prov["cores"].add(sess["cores"])
    if not sessions:
        prov["processor"].add("unknown processor")
    mtimes = [(out / f"seed{s}" / "metrics.json").stat().st_mtime for s in seeds
              if (out / f"seed{s}" / "metrics.json").exists()]
    date = (datetime.datetime.fromtimestamp(max(mtimes), datetime.timezone.utc)
            .strftime("%Y-%m-%d") if mtimes else "unknown date")
    return {**{k: sorted(v, key=str) for k, v in prov.items()}, "date": date}


# --- formatting ------------------------------------------------------------------------------

def _fmt(v: float, spec: str) -> str:
    if spec.endswith("k"):
        return format(v / 1000, (spec[:-1] or ".1") + "f") + "k"
    if spec:
        return format(v, spec)
    return f"{v:g}" if isinstance(v, float) else str(v)


def median_range(values: Sequence[float], spec: str) -> str:
    """``median (min-max)``; one number when the seeds agree to the digits shown."""
    if spec == "n":  # how many seeds it holds for
        return f"{sum(bool(v) for v in values)}/{len(values)}"
    values = [float(v) for v in values]
    med, lo, hi = statistics.median(values), min(values), max(values)
    m, a, b = _fmt(med, spec), _fmt(lo, spec), _fmt(hi, spec)
    if a == b:
        return m
    sep = " to " if lo < 0 or hi < 0 else "-"
    return f"{m} ({a}{sep}{b})"


def seconds(values: Sequence[float]) -> str:
    med = statistics.median(float(v) for v in values)
    return f"{med:.1f} s" if med < 10 else f"{med:.0f} s"


def command(row: Row) -> str:
    sweep = row.sweep
    sets = "".join(f" --set {s}" for s in sweep.sets)
    if row.shown is not None:
        return row.shown
    if row.table == "classification":
        return f"`spikegrad run {sweep.app}{sets}`"
    return f"`{sweep.app}{sets}`"


class _Missing(Exception):
    pass


def _config_value(config: dict, field: str, spec: str) -> str:
    if field not in config:
        raise KeyError(f"config has no field {field!r}")
    v = config[field]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _fmt(v, spec)
    return str(v).upper() if spec == "upper" else str(v)


def render_cell(template: str, row: Row, data: Dict[str, Optional[Measured]],
                config: dict) -> str:
    """``template`` with its fields filled; raises _Missing when a sweep it reads has not
    finished."""
    prefixes = dict(row.uses)
    derived = {name: (fn, keys) for name, fn, keys in row.derive}

    def values(m: Measured, key: str) -> Tuple[List[float], int]:
        out = []
        for s in m.seeds:
            d = m.per_seed[s]
            if key in derived:
                fn, keys = derived[key]
                if all(k in d for k in keys):
                    out.append(fn(*(d[k] for k in keys)))
                elif not any(k in row.optional for k in keys):
                    raise KeyError(f"{m.sweep.id} seed {s}: no metric "
                                   f"{[k for k in keys if k not in d]}")
            elif key in d:
                out.append(d[key])
            elif key not in row.optional:
                raise KeyError(f"{m.sweep.id} seed {s}: no metric {key!r}")
        return out, len(m.seeds)

    def fill(match) -> str:
        src, key, spec = match["src"], match["key"], match["spec"] or ""
        sweep = prefixes[src] if src else row.sweep
        if key == "cmd":
            return command(row)
        m = data.get(sweep.id)
        if key.startswith("cfg."):
            cfg = m.config if m is not None and m.config else (
                config if sweep is row.sweep else {})
            return _config_value(cfg, key[4:], spec)
        if m is None:
            raise _Missing(sweep.id)
        if key == "wall":
            return seconds([m.per_seed[s][sweep.wall_key] for s in m.seeds])
        vals, n = values(m, key)
        if not vals:
            return "n/a"
        text = median_range(vals, spec)
        return text if len(vals) == n else f"{text} [{len(vals)}/{n} seeds]"

    return FIELD.sub(fill, template)


def render_row(row: Row, data: Dict[str, Optional[Measured]]) -> str:
    try:
        config = expected_config(row.sweep) or {}
    except Exception:  # a spec the app no longer accepts: the row cannot be measured either
        config = {}
    cells, missing = [], False
    for template in row.cells:
        try:
            cells.append(render_cell(template, row, data, config))
        except _Missing:
            cells.append("–" if missing else NOT_MEASURED)
            missing = True
        except KeyError as e:
            print(f"results: row {row.id}: {e.args[0]}", file=sys.stderr)
            cells.append("–" if missing else NOT_MEASURED)
            missing = True
    m = data.get(row.sweep.id)
    if m is not None and not missing and m.seeds != _table_seeds(data):
        cells[0] += f" [seeds {_seed_text(m.seeds)}]"
    return "| " + " | ".join(cells) + " |"


def _seed_text(seeds: Sequence[int]) -> str:
    s = sorted(seeds)
    if s == list(range(s[0], s[-1] + 1)) and len(s) > 2:
        return f"{s[0]}-{s[-1]}"
    return ", ".join(map(str, s))


def _table_seeds(data: Dict[str, Optional[Measured]]) -> List[int]:
    counts: Dict[Tuple[int, ...], int] = {}
    for m in data.values():
        if m is not None:
            counts[tuple(m.seeds)] = counts.get(tuple(m.seeds), 0) + 1
    return list(max(counts, key=counts.get)) if counts else []


def provenance_line(rows: Sequence[Row], data: Dict[str, Optional[Measured]]) -> str:
    measured = [data[s.id] for r in rows for s in r.sweeps() if data.get(s.id) is not None]
    if not measured:
        return ("Not measured yet: `make results` runs each row's command over seeds 0-4 and "
                "writes the numbers here.")
    by_id = {m.sweep.id: m for m in measured}
    agg: Dict[str, set] = {}
    for m in by_id.values():
        for k in ("commit", "torch", "threads", "processor", "dirty"):
            agg.setdefault(k, set()).update(map(str, m.provenance[k]))
    dates = sorted(m.provenance["date"] for m in by_id.values())
    dirty = agg["dirty"] - {"False"}
    tree = "uncommitted changes" if dirty else "clean tree"
    date = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    seeds = _seed_text(_table_seeds(data))
    loads = [float(x) for m in by_id.values() for x in m.provenance.get("load", ())]
    cores = sorted({int(c) for m in by_id.values() for c in m.provenance.get("cores", ())})
    load = ""
    if loads:
        load = (f" 1-minute load average at the start and end of the sweeps: "
                f"{min(loads):.1f}-{max(loads):.1f} on {'/'.join(map(str, cores)) or '?'} cores")
        busy = cores and max(loads) > 1.2 * min(cores)
        load += (" (other jobs shared the machine: the wall times are stretched)." if busy
                 else ".")
    return (f"Median (min-max) over seeds {seeds} of the command shown; wall time: the whole "
            f"command (every comparison its report holds), median over the seeds. Measured by `make results` at commit "
            f"{', '.join(sorted(agg['commit']))} ({tree}) on {'; '.join(sorted(agg['processor']))}, "
            f"torch {', '.join(sorted(agg['torch']))}, {', '.join(sorted(agg['threads']))} "
            f"torch threads, {date} (UTC).{load}")


def render_table(table: str, rows: Sequence[Row], data: Dict[str, Optional[Measured]],
                 old_block: Optional[str] = None, only: Optional[Sequence[str]] = None) -> str:
    """The table's block. With ``only`` (row ids) and the README's current block, every other
    row keeps its current line and the provenance line is kept; the re-rendered rows are
    marked with their commit and date, and their provenance is added as a sentence of its
    own (sweep folders are not kept between machines, so a partial run must not blank the
    rows it did not measure)."""
    mine = [r for r in rows if r.table == table]
    sub = {s.id: data.get(s.id) for r in mine for s in r.sweeps()}
    old_rows, old_tail = _split_block(old_block, len(TABLES[table])) if only else ([], [])
    if only is None or len(old_rows) != len(mine):
        lines = list(TABLES[table]) + [render_row(r, sub) for r in mine]
        return "\n".join(lines + ["", provenance_line(mine, sub)])
    redone = [r for r in mine if r.id in only]
    lines = list(TABLES[table])
    for r, old in zip(mine, old_rows):
        if r not in redone:
            lines.append(old)
            continue
        line = render_row(r, sub)
        prov = [data[s.id].provenance for s in r.sweeps() if data.get(s.id) is not None]
        if prov:
            commits = ", ".join(sorted({str(c) for p in prov for c in p["commit"]}))
            date = min(p["date"] for p in prov)
            line = line.replace(" | ", f" [re-measured {date} at {commits}] | ", 1)
        lines.append(line)
    tail = [t for t in old_tail if t.strip()]
    if redone and any(data.get(s.id) is not None for r in redone for s in r.sweeps()):
        sentence = "Rows marked re-measured: " + provenance_line(
            redone, {s.id: data.get(s.id) for r in redone for s in r.sweeps()})
        if sentence not in " ".join(tail):  # rendering the same sweeps again adds nothing
            tail.append(sentence)
    return "\n".join(lines + [""] + [" ".join(tail)])


def _split_block(block: Optional[str], n_header: int) -> Tuple[List[str], List[str]]:
    """A rendered block's row lines and the lines after them."""
    if not block:
        return [], []
    lines = block.strip("\n").splitlines()
    body = lines[n_header:]
    rows = [ln for ln in body if ln.startswith("| ")]
    return rows, body[len(rows):]


def current_block(text: str, table: str) -> Optional[str]:
    begin, end = f"<!-- results:{table}:begin -->", f"<!-- results:{table}:end -->"
    if text.count(begin) != 1 or text.count(end) != 1:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0]


def replace_block(text: str, table: str, body: str) -> str:
    begin, end = f"<!-- results:{table}:begin -->", f"<!-- results:{table}:end -->"
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"README.md needs exactly one {begin} ... {end} pair")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def render(readme: Path, results: Path, rows: Sequence[Row] = ROWS,
           check_config: bool = True, only: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Rewrite both tables of ``readme`` from ``results``; returns row id -> status. With
    ``only`` (row ids) the other rows keep their current lines (:func:`render_table`)."""
    data, status = {}, {}
    for s in all_sweeps(rows):
        data[s.id], why = load_sweep(results, s, check_config)
        status[s.id] = "measured" if data[s.id] is not None else why
    text = readme.read_text()
    for table in TABLES:
        if any(r.table == table for r in rows):
            if only is not None and not any(r.table == table and r.id in only for r in rows):
                continue
            text = replace_block(text, table, render_table(
                table, rows, data, current_block(text, table), only))
    readme.write_text(text)
    return status


# --- running ---------------------------------------------------------------------------------

def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown processor"


def _load() -> Optional[float]:
    """1-minute load average (other jobs on the machine stretch the wall times)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _dirty() -> bool:
    # README.md is what this script writes; results/ is ignored
    lines = _git("status", "--porcelain").splitlines()
    return any(not line[3:].strip().endswith("README.md") for line in lines if line.strip())


def run_sweep(sweep: Sweep, seeds: Sequence[int], results: Path) -> None:
    out = results / sweep.id
    done, why = load_sweep(results, sweep)
    if done is not None and set(seeds) <= set(done.seeds):
        print(f"results: {sweep.id}: done (seeds {_seed_text(done.seeds)})", flush=True)
        return
    if (out / "sweep.json").exists():
        manifest = json.loads((out / "sweep.json").read_text())
        if manifest.get("app") != sweep.app or manifest.get("overrides") != list(sweep.sets):
            raise SystemExit(f"results: {sweep.id}: {out} holds a sweep of another command "
                             f"(the row spec changed); delete {out} to measure it again")
        cfg = out / "seed0" / "config.json"
        if cfg.exists():
            changed = _config_changes(json.loads(cfg.read_text()), expected_config(sweep),
                                      _defaults(sweep))
            if changed:
                raise SystemExit(f"results: {sweep.id}: {out} was run with another config "
                                 f"({', '.join(changed[:5])}); delete {out} to measure it again")
    prov_path = out / "provenance.json"
    out.mkdir(parents=True, exist_ok=True)
    try:
        sessions = json.loads(prov_path.read_text())["sessions"]
    except (OSError, json.JSONDecodeError, KeyError):
        sessions = []
    import torch  # its thread count is the seeds' (same environment)
    sessions.append({"commit": _git("rev-parse", "--short", "HEAD") or "unknown",
                     "dirty": _dirty(), "processor": processor(),
                     "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "cores": os.cpu_count(), "load": [_load()],
                     "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                         timespec="seconds")})
    prov_path.write_text(json.dumps({"sessions": sessions}, indent=2) + "\n")
    cmd = [sys.executable, "-m", "spikegrad.cli", "sweep", sweep.app, "--seeds",
           ",".join(map(str, seeds)), "--out", str(out), "--resume-or-start"]
    for s in sweep.sets:
        cmd += ["--set", s]
    print(f"results: {sweep.id}: {' '.join(cmd[2:])}", flush=True)
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    if rc != 0:
        raise SystemExit(f"results: {sweep.id}: the sweep exited with {rc}; `make results` "
                         "again continues it")
    sessions[-1]["load"].append(_load())
    sessions[-1]["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    prov_path.write_text(json.dumps({"sessions": sessions}, indent=2) + "\n")


def select(only: Optional[str], rows: Sequence[Row] = ROWS) -> List[Row]:
    if not only:
        return list(rows)
    ids = [s.strip() for s in only.split(",") if s.strip()]
    known = {r.id for r in rows}
    bad = [i for i in ids if i not in known]
    if bad:
        raise SystemExit(f"results: unknown row {', '.join(bad)}; rows: {', '.join(sorted(known))}")
    return [r for r in rows if r.id in ids]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated row ids (see --list); default: all")
    p.add_argument("--seeds", default=DEFAULT_SEEDS,
                   help="number of seeds (0..N-1) or a list (default 5: seeds 0-4)")
    p.add_argument("--render-only", action="store_true",
                   help="run nothing; rewrite the tables from the finished sweeps")
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--list", action="store_true", help="print the rows and their commands")
    args = p.parse_args(argv)
    if args.list:
        for r in ROWS:
            for s in r.sweeps():
                print(f"{r.id:<20} results/{s.id:<20} spikegrad sweep {s.app} "
                      + " ".join(f"--set {x}" for x in s.sets))
        return 0
    rows = select(args.only)
    if not args.render_only:
        from spikegrad.apps.sweep import parse_seeds
        seeds = parse_seeds(args.seeds)
        for s in all_sweeps(rows):
            run_sweep(s, seeds, args.results)
    status = render(args.readme, args.results,
                    only=[r.id for r in rows] if args.only else None)
    for sid, st in status.items():
        print(f"results: {sid:<20} {st}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
