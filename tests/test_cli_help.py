"""The self-describing CLI: `spikegrad list`, `spikegrad list APP` and `spikegrad run APP
--help` show every key with its type, default and meaning; bad names are one-line errors."""

import dataclasses

from spikegrad.apps import APPS, get_app
from spikegrad.cli import main


def test_list_names_every_app_with_its_summary(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in APPS:
        line = next(ln for ln in out.splitlines() if ln.split()[:1] == [name])
        assert len(line.split()) > 3, line   # a summary follows the name


def test_list_app_shows_each_key_with_type_default_and_meaning(capsys):
    assert main(["list", "classification"]) == 0
    out = capsys.readouterr().out
    fields = dataclasses.fields(get_app("classification").Config)
    lines = out.splitlines()
    for f in fields:
        assert any(ln.split()[:1] == [f.name] for ln in lines), f.name
    epochs = next(ln for ln in lines if ln.split()[:1] == ["epochs"])
    assert "int or None" in epochs and "None -> 30" in epochs   # the digits preset
    seed = next(ln for ln in lines if ln.split()[:1] == ["seed"])
    assert "seed of every random draw" in seed


def test_run_app_help_is_the_commands_options_then_the_apps_keys(capsys):
    assert main(["run", "regression", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--resume-or-start" in out and "--set KEY=VALUE" in out
    assert "regression: Sequence regression" in out
    assert any(ln.split()[:1] == ["tbptt_k"] for ln in out.splitlines())
    assert main(["sweep", "--help"]) == 0
    assert "--seeds" in capsys.readouterr().out


def test_unknown_app_and_missing_app_are_one_line_errors(capsys):
    assert main(["list", "nope"]) == 2
    assert main(["run", "nope", "--help"]) == 2
    assert main(["run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("spikegrad: error:") for e in err)
    assert "unknown app 'nope'" in err[0] and "required: app" in err[2]
