"""sg.viz: what each plot draws (the dots of a raster, the rates of a histogram, the lines of
a membrane plot), that every axis names its quantity and unit, that one-sample panels name
the sample and label, and that a batch without `sample` is refused with a hint."""

import numpy as np
import pytest
import torch

import spikegrad as sg

pytest.importorskip("matplotlib")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    sg.viz.pyplot().close("all")


def test_raster_puts_one_tick_per_spike_at_its_time_and_names_the_sample():
    z = torch.zeros(5, 3, 4)
    z[1, 2, 0] = z[3, 2, 3] = z[4, 0, 1] = 1
    ax = sg.viz.raster(z, sample=2, label=7, dt_ms=2.0)
    pts = ax.collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(pts).tolist())) == [(2.0, 0.0), (6.0, 3.0)]
    assert ax.get_xlabel() == "time (ms)" and ax.get_ylabel() == "neuron index"
    assert ax.get_title() == "sample 2, label 7"
    steps = sg.viz.raster(np.eye(6)[:, :5], max_neurons=3)
    assert steps.get_xlabel() == "time (steps)"
    assert steps.get_ylabel() == "neuron index (first 3 of 5)"


def test_a_batch_without_sample_or_a_wrong_rank_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="pass sample=b"):
        sg.viz.raster(torch.zeros(4, 2, 3))
    with pytest.raises(ValueError, match=r"out of range for a batch of 2"):
        sg.viz.membrane(torch.zeros(4, 2, 3), sample=5)
    with pytest.raises(ValueError, match=r"\[T, N\] or \[T, B, N\]"):
        sg.viz.raster(torch.zeros(2, 2, 2, 2))


def test_membrane_draws_each_neuron_the_threshold_and_its_spikes():
    v = torch.linspace(0, 1.5, 10)[:, None].repeat(1, 3) * torch.tensor([1.0, 0.5, 0.2])
    z = (v >= 1).float()
    ax = sg.viz.membrane(v, threshold=1.0, spikes=z, neurons=[0, 1], dt_ms=1.0, label=3)
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert "neuron 0" in labels and "neuron 1" in labels and "neuron 2" not in labels
    thr = ax.get_lines()[labels.index("threshold")]
    assert set(thr.get_ydata()) == {1.0}
    dots = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert len(dots[0].get_xdata()) == int(z[:, 0].sum()) and len(dots[1].get_xdata()) == 0
    assert ax.get_ylabel() == "membrane potential (a.u.)" and ax.get_title() == "label 3"


def test_rate_histogram_in_hz_from_the_step():
    z = torch.zeros(100, 2, 3)
    z[::10, :, 0] = 1      # every 10th step: 0.1 per step = 100 Hz at 1 ms, 50 Hz at 2 ms
    z[::2, :, 1] = 1       # 0.5 per step
    ax = sg.viz.rate_histogram(z, dt_ms=2.0)
    assert ax.rates.tolist() == pytest.approx([50.0, 250.0, 0.0])
    assert ax.get_xlabel() == "firing rate (Hz)" and ax.get_ylabel() == "neurons"
    assert sum(p.get_height() for p in ax.patches) == 3
    assert sg.viz.rate_histogram(z[:, 0]).get_xlabel() == "firing rate (spikes per step)"


def test_curves_label_the_y_axis_from_the_keys_and_leave_gaps():
    hist = [{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.0, "val_loss": 1.5}]
    ax = sg.viz.curves(hist, ["train_loss", "val_loss"])
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"
    val = [ln for ln in ax.get_lines() if ln.get_label() == "val_loss"][0]
    assert np.isnan(val.get_ydata()[0]) and val.get_ydata()[1] == 1.5
    assert sg.viz.curves(hist, ["train_loss"], ylabel="cross-entropy").get_ylabel() == \
        "cross-entropy"


def test_save_functions_write_labelled_figures(tmp_path):
    hist = [{"epoch": 1, "train_loss": 2.0, "test_accuracy": 0.5}]
    assert sg.viz.save_curves(tmp_path / "c.png", hist, {"loss": ["train_loss"],
                                                         "accuracy": ["test_accuracy"]}
                              ).stat().st_size > 0
    assert sg.viz.save_rasters(tmp_path / "r.png", [("sample 0, label 1", np.eye(4))],
                               dt_ms=1.0).stat().st_size > 0
    assert sg.viz.save_traces(tmp_path / "t.png", np.zeros((5, 2)), ["a", "b"],
                              threshold=1.0).stat().st_size > 0
