import os

import pytest
import torch

from spikegrad.train import latest_checkpoint, load_checkpoint, save_checkpoint
from spikegrad.train.checkpoint import checkpoint_path, list_checkpoints, prune_checkpoints


def _payload(value=1.0):
    return {
        "model": {"w": torch.full((3, 2), value, dtype=torch.float64)},
        "epoch": 4,
        "history": [{"epoch": 1, "loss": 0.5}],
        "rng": {"torch": torch.get_rng_state(), "keys": torch.arange(5), "gauss": None},
        "tuple": (1, "a", 2.5, True),
    }


def _assert_same(a, b):
    assert a.keys() == b.keys()
    assert torch.equal(a["model"]["w"], b["model"]["w"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert a["history"] == b["history"] and a["epoch"] == b["epoch"] and a["tuple"] == b["tuple"]


def test_round_trip_and_plain_weights_only_load(tmp_path):
    path = save_checkpoint(tmp_path / "sub" / "c.pt", _payload())
    _assert_same(load_checkpoint(path), _payload())
    # The file itself stays an ordinary torch file that weights_only loading accepts.
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "spikegrad.checkpoint" and len(raw["sha256"]) == 64


def test_atomic_write_leaves_no_temp_files_and_replaces(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _payload(1.0))
    save_checkpoint(path, _payload(2.0))
    assert os.listdir(tmp_path) == ["c.pt"]
    assert load_checkpoint(path)["model"]["w"][0, 0] == 2.0


def test_failed_replace_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _payload(1.0))

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _payload(2.0))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["c.pt"]
    assert load_checkpoint(path)["model"]["w"][0, 0] == 1.0


def test_truncated_file_is_a_clear_value_error(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _payload())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"c\.pt.*(truncated|corrupt).*earlier checkpoint"):
        load_checkpoint(path)


def test_flipped_payload_byte_fails_the_hash(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _payload())
    data = bytearray(path.read_bytes())
    stored = torch.load(path, weights_only=True)["payload"].numpy().tobytes()
    start = data.find(stored)
    assert start > 0
    data[start + len(stored) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"c\.pt.*corrupt"):
        load_checkpoint(path)


def test_not_a_spikegrad_checkpoint(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a spikegrad checkpoint"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")


def test_unloadable_payload_is_refused_at_save_time(tmp_path):
    with pytest.raises(TypeError, match="weights_only"):
        save_checkpoint(tmp_path / "c.pt", {"obj": torch.nn.Linear(1, 1)})
    with pytest.raises(TypeError, match="dict"):
        save_checkpoint(tmp_path / "c.pt", [1, 2])
    assert os.listdir(tmp_path) == []


def test_latest_checkpoint_skips_corrupt_with_warning(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None
    for epoch in (1, 2, 3):
        save_checkpoint(checkpoint_path(tmp_path, epoch), _payload(float(epoch)))
    (tmp_path / "notes.txt").write_text("ignored")
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt_epoch00003.pt"
    newest = tmp_path / "ckpt_epoch00003.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(UserWarning, match="ckpt_epoch00003"):
        assert latest_checkpoint(tmp_path) == tmp_path / "ckpt_epoch00002.pt"


def test_list_and_prune(tmp_path):
    for epoch in (1, 2, 3, 10):
        save_checkpoint(checkpoint_path(tmp_path, epoch), _payload())
    assert [e for e, _ in list_checkpoints(tmp_path)] == [1, 2, 3, 10]
    prune_checkpoints(tmp_path, 2, upto=3)
    assert [e for e, _ in list_checkpoints(tmp_path)] == [2, 3, 10]
    prune_checkpoints(tmp_path, 1)
    assert [e for e, _ in list_checkpoints(tmp_path)] == [10]
    with pytest.raises(ValueError, match="keep"):
        prune_checkpoints(tmp_path, 0)
