"""scripts/app_figures.py: a docs page's figure block is rewritten from a run of the default
config and nothing else; a run of another config, or none, leaves the page as it is."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("app_figures_script",
                                               ROOT / "scripts" / "app_figures.py")
AF = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = AF
_spec.loader.exec_module(AF)

PAGE = "# Coding\n\ntext\n\n<!-- figure:begin -->\nstale figure\n<!-- figure:end -->\n\n## Measured\n"


def _run(tmp_path, config):
    from PIL import Image
    run = tmp_path / "runs" / "coding"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config))
    (run / "environment.json").write_text(json.dumps({"git_commit": "abcdef1234567"}))
    Image.new("RGB", (2 * AF.MAX_WIDTH, 100), "white").save(run / "error_profile.png")
    return run


@pytest.fixture
def docs(tmp_path, monkeypatch):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "coding.md").write_text(PAGE)
    monkeypatch.setattr(AF, "DOCS", d)
    return d


def test_a_default_run_fills_the_block_with_a_shrunk_image_and_its_provenance(tmp_path, docs):
    from PIL import Image
    _run(tmp_path, dict(AF._default_config("coding"), seed=0))
    assert AF.main(["--runs", str(tmp_path / "runs"), "--only", "coding"]) == 0
    text = (docs / "coding.md").read_text()
    assert "stale figure" not in text and text.startswith("# Coding\n\ntext\n\n<!-- figure:begin -->")
    assert "](img/coding-error_profile.png)" in text and "commit abcdef1" in text
    assert "`spikegrad run coding` (the default config, seed 0)" in text
    assert text.endswith("<!-- figure:end -->\n\n## Measured\n")
    with Image.open(docs / "img" / "coding-error_profile.png") as im:
        assert im.size == (AF.MAX_WIDTH, 50)


def test_a_run_of_another_config_or_no_run_leaves_the_page(tmp_path, docs, capsys):
    config = dict(AF._default_config("coding"), seed=0)
    config["hidden"] = config["hidden"] + 1
    _run(tmp_path, config)
    assert AF.main(["--runs", str(tmp_path / "runs"), "--only", "coding,vision"]) == 0
    assert (docs / "coding.md").read_text() == PAGE
    err = capsys.readouterr().err
    assert "coding: " in err and "another config (hidden)" in err
    assert "vision: no " in err


def test_unknown_app_and_a_page_without_markers_are_errors(tmp_path, docs):
    with pytest.raises(SystemExit):
        AF.main(["--runs", str(tmp_path), "--only", "nope"])
    with pytest.raises(ValueError, match="figure:begin"):
        AF.replace_block("no markers", "block", Path("page.md"))
