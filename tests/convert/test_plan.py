"""What convert accepts: unsupported or misplaced layers are named by index and type."""

import pytest
import torch
from torch import nn

import spikegrad as sg
from spikegrad.convert import QCFS, convert
from spikegrad.convert.plan import read_ann


@pytest.mark.parametrize("layers, exc, match", [
    ([nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)], TypeError,
     r"layer 1 \(Sigmoid\) is not supported.*supported: nn.Linear.*nn.ReLU"),
    ([nn.Linear(4, 4), nn.LeakyReLU(), nn.Linear(4, 2)], TypeError, r"layer 1 \(LeakyReLU\)"),
    ([nn.LSTM(4, 4), nn.Linear(4, 2)], TypeError, r"layer 0 \(LSTM\) is not supported"),
    ([nn.Conv3d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)], TypeError,
     r"layer 0 \(Conv3d\)"),
    ([sg.nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)], TypeError,
     r"layer 0 \(Linear\) is a spikegrad layer"),
    ([nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2)], ValueError,
     r"layer 2 \(BatchNorm1d\).*follows layer 1 \(ReLU\)"),
    ([nn.Linear(4, 4), nn.Dropout(), nn.BatchNorm1d(4), nn.Linear(4, 2)], ValueError,
     r"layer 2 \(BatchNorm1d\).*follows layer 1 \(Dropout\)"),
    ([nn.ReLU(), nn.Linear(4, 2)], ValueError, r"layer 0 \(ReLU\) acts on the analog input"),
    ([nn.Linear(4, 4), nn.ReLU(), QCFS(), nn.Linear(4, 2)], ValueError,
     r"layer 2 \(QCFS\) follows the activation layer 1 \(ReLU\)"),
    ([nn.Linear(4, 4), nn.ReLU()], ValueError,
     r"ends with the activation layer 1 \(ReLU\).*output layer"),
    ([nn.Flatten()], ValueError, "no nn.Linear or nn.Conv1d/2d layer"),
    ([nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Conv1d(2, 2, 3), nn.MaxPool1d(2)], ValueError,
     r"layer 3 \(MaxPool1d\) pools the currents"),
    ([nn.Conv1d(1, 2, 3), nn.MaxPool1d(2, return_indices=True), nn.ReLU(), nn.Flatten(),
      nn.Linear(2, 2)], ValueError, r"layer 1 \(MaxPool1d\): return_indices"),
    ([nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(2), nn.Linear(2, 2)], ValueError,
     r"layer 2 \(Flatten\): only nn.Flatten\(\)"),
])
def test_unsupported_or_misplaced_layers_are_named(layers, exc, match):
    with pytest.raises(exc, match=match):
        read_ann(nn.Sequential(*layers))
    with pytest.raises(exc, match=match):  # convert says the same, before any computation
        convert(nn.Sequential(*layers), torch.rand(2, 1, 8))


def test_ann_must_be_a_sequential():
    with pytest.raises(TypeError, match="ann must be a torch.nn.Sequential"):
        read_ann(nn.Linear(3, 2))


def test_batchnorm_folded_dropout_dropped_maxpool_moved_after_its_activation():
    ann = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.MaxPool2d(2), nn.ReLU(),
                        nn.Dropout(), nn.Flatten(), nn.Linear(2, 3), nn.Dropout())
    layers = read_ann(ann)
    assert [(la.index, la.kind) for la in layers] == [
        (0, "weight"), (3, "activation"), (2, "maxpool"), (5, "flatten"), (6, "weight")]
    assert layers[0].module is not ann[0] and layers[0].module.bias is not None
    assert layers[4].module is ann[6]   # a layer without BatchNorm is used as it is
