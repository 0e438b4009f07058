"""The epoch loggers: CSV (widening header) and TensorBoard (read back with TensorBoard's own
reader) mirror the trainer's history, and a resumed run logs each epoch once in every
format, like the JSON-lines log; the app-level `log` spec and its errors."""

import csv
import json

import pytest

from spikegrad.train import CsvLogger, JsonLinesLogger, Logger, TensorBoardLogger, Trainer
from spikegrad.train.log import check_formats, loggers_for

from test_trainer import _strip_seconds, build_run

RECORDS = [{"epoch": 1, "train_loss": 2.0, "lr": 0.1},
           {"epoch": 2, "train_loss": 1.5, "lr": 0.05, "val_accuracy": 0.7,
            "extra": {"a": 3, "name": "x"}, "flag": True}]


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _tb(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_csv_widens_its_header_when_a_record_brings_a_new_key(tmp_path):
    lg = CsvLogger(tmp_path / "log.csv")
    lg.rewrite([])
    for r in RECORDS:
        lg.append(r)
    rows = _csv(tmp_path / "log.csv")
    assert list(rows[0]) == ["epoch", "train_loss", "lr", "val_accuracy", "extra", "flag"]
    assert rows[0]["val_accuracy"] == "" and rows[1]["val_accuracy"] == "0.7"
    assert json.loads(rows[1]["extra"]) == {"a": 3, "name": "x"}
    lg.rewrite(RECORDS[:1])   # a resume that kept one epoch
    assert [r["epoch"] for r in _csv(tmp_path / "log.csv")] == ["1"]


def test_tensorboard_scalars_per_epoch_and_a_rewrite_purges_later_steps(tmp_path):
    lg = TensorBoardLogger(tmp_path / "tb")
    lg.rewrite([])
    for r in RECORDS:
        lg.append(r)
    lg.close()
    got = _tb(tmp_path / "tb")
    assert got["train_loss"] == [(1, 2.0), (2, 1.5)]
    assert got["val_accuracy"] == [(2, pytest.approx(0.7))]
    assert got["extra/a"] == [(2, 3.0)]
    assert "flag" not in got and "epoch" not in got and "extra/name" not in got
    again = TensorBoardLogger(tmp_path / "tb")   # a new process resuming after epoch 1
    again.rewrite(RECORDS[:1])
    again.append({"epoch": 2, "train_loss": 1.25, "lr": 0.05})
    again.close()
    assert _tb(tmp_path / "tb")["train_loss"] == [(1, 2.0), (2, 1.25)]


def test_a_resumed_run_logs_each_epoch_once_in_every_format(tmp_path):
    def loggers():
        return [CsvLogger(tmp_path / "log.csv"), TensorBoardLogger(tmp_path / "tb")]

    first, loader = build_run(0, checkpoint_dir=tmp_path / "ck", log_path=tmp_path / "log.jsonl",
                              loggers=loggers())
    first.fit(loader, 2)
    resumed, loader = build_run(0, checkpoint_dir=tmp_path / "ck",
                                log_path=tmp_path / "log.jsonl", loggers=loggers())
    history = resumed.fit(loader, 3, resume="latest")
    rows = _csv(tmp_path / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["train_loss"]) for r in rows] == [h["train_loss"] for h in history]
    tb = _tb(tmp_path / "tb")["train_loss"]
    assert [s for s, _ in tb] == [1, 2, 3]
    assert [v for _, v in tb] == pytest.approx([h["train_loss"] for h in history], rel=1e-6)
    jsonl = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert _strip_seconds(jsonl) == _strip_seconds(history)


def test_loggers_are_closed_when_fit_fails_and_a_non_logger_is_refused(tmp_path):
    class Recorder(Logger):
        def __init__(self):
            self.calls = []

        def rewrite(self, history):
            self.calls.append(("rewrite", len(history)))

        def append(self, record):
            self.calls.append(("append", record["epoch"]))
            raise RuntimeError("disk full")

        def close(self):
            self.calls.append(("close",))

    rec = Recorder()
    trainer, loader = build_run(0, loggers=[rec])
    with pytest.raises(RuntimeError, match="disk full"):
        trainer.fit(loader, 2)
    assert rec.calls == [("rewrite", 0), ("append", 1), ("close",)]
    with pytest.raises(TypeError, match="not a logger"):
        Trainer(trainer.model, trainer.optimizer, trainer.objective, loggers=[object()])


def test_log_spec_names_formats_and_paths_beside_the_jsonl(tmp_path):
    assert check_formats("") == [] and check_formats(" csv , tensorboard") == ["csv",
                                                                                 "tensorboard"]
    with pytest.raises(ValueError, match="csv, tensorboard"):
        check_formats("csv,wandb")
    csv_lg, tb_lg = loggers_for("csv,tensorboard", tmp_path / "run" / "log_cue.jsonl")
    assert isinstance(csv_lg, CsvLogger) and csv_lg.path == tmp_path / "run" / "log_cue.csv"
    assert isinstance(tb_lg, TensorBoardLogger)
    assert tb_lg.log_dir == tmp_path / "run" / "tb" / "log_cue"
    assert isinstance(JsonLinesLogger(tmp_path / "x.jsonl"), Logger)
