"""scripts/results.py: the README tables rendered from sweep folders, the row specs' metric
keys against what the apps write, and one small real sweep end to end."""

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("results_script", ROOT / "scripts" / "results.py")
R = importlib.util.module_from_spec(_spec)
sys.modules["results_script"] = R  # dataclasses look their module up by name
_spec.loader.exec_module(R)

SEEDS = [0, 1, 2, 3, 4]
README = """# title

intro text that stays
## Results

<!-- results:classification:begin -->
old hand-typed table | 0.976 |
<!-- results:classification:end -->

middle text that stays

<!-- results:apps:begin -->
| old | 0.0040 |
<!-- results:apps:end -->

tail text that stays
"""


def _side_files(keys):
    """Split flattened keys into metrics.json and the tables the apps write beside it."""
    metrics, tbptt, compare, memory = {}, {}, {}, {}
    for k, v in keys.items():
        parts = k.split(".")
        if parts[0] == "tbptt":
            tbptt.setdefault(int(parts[1][1:]), {})[parts[2]] = v
        elif parts[0] == "compare":
            compare.setdefault(parts[1], {})[parts[2]] = v
        elif parts[0] == "memory":
            memory.setdefault((parts[1], int(parts[2][1:])), {})[parts[3]] = v
        else:
            metrics[k] = v
    files = {"metrics.json": metrics}
    if tbptt:
        files["tbptt_table.json"] = [{"tbptt_k": kk, **r} for kk, r in tbptt.items()]
    if compare:
        files["compare.json"] = [{"learning": n, **r} for n, r in compare.items()]
    if memory:
        files["memory.json"] = [{"learning": n, "T": t, **r} for (n, t), r in memory.items()]
    return files


def fake_sweep(results, sweep, values, seeds=SEEDS, overrides=None, config_change=None):
    """A finished sweep in the layout `spikegrad sweep` writes; ``values(seed)`` gives the
    flattened metrics of a seed."""
    out = results / sweep.id
    out.mkdir(parents=True)
    (out / "sweep.json").write_text(json.dumps({
        "app": sweep.app, "overrides": list(sweep.sets if overrides is None else overrides),
        "seeds": seeds}))
    per_seed = {}
    for s in seeds:
        d = out / f"seed{s}"
        d.mkdir()
        keys = values(s)
        for name, content in _side_files(keys).items():
            (d / name).write_text(json.dumps(content))
        cfg = R.expected_config(sweep, s)
        cfg.update(config_change or {})
        (d / "config.json").write_text(json.dumps(cfg))
        (d / "environment.json").write_text(json.dumps(
            {"git_commit": "abc1234", "torch": "2.13.0", "threads": 2}))
        per_seed[str(s)] = keys
    (out / "summary.json").write_text(json.dumps({"seeds": seeds, "stats": {},
                                                  "per_seed": per_seed}))
    (out / "provenance.json").write_text(json.dumps({"sessions": [
        {"processor": "Test CPU 9000", "dirty": False, "commit": "abc1234"}]}))
    return out


def _all_keys(sweep):
    keys = set()
    for row in R.ROWS:
        keys |= R.template_keys(row).get(sweep.id, set())
    return keys | {sweep.wall_key}


def _generic(sweep):
    keys = sorted(_all_keys(sweep))
    return lambda s: {k: (0.5 + 0.01 * s + 0.001 * i) for i, k in enumerate(keys)}


def _rows_text(readme, table):
    text = readme.read_text()
    block = text.split(f"<!-- results:{table}:begin -->")[1].split(
        f"<!-- results:{table}:end -->")[0]
    return [line for line in block.splitlines() if line.startswith("| ")][1:]


def test_median_range_formatting():
    assert R.median_range([0.976, 0.969, 0.982, 0.98, 0.976], ".3f") == "0.976 (0.969-0.982)"
    assert R.median_range([0.5, 0.5, 0.5], ".3f") == "0.500"  # seeds agree: one number
    assert R.median_range([-0.01, 0.02, 0.03], ".2f") == "0.02 (-0.01 to 0.03)"
    assert R.median_range([True, False, True, True, True], "n") == "4/5"
    assert R.median_range([54600.0, 54700.0, 54650.0], ".1k") == "54.6k (54.6k-54.7k)"
    assert R.seconds([9.0, 8.0, 70.0]) == "9.0 s"
    assert R.seconds([70.2, 60.0, 90.0]) == "70 s"


def test_only_fake_demo_measured(tmp_path):
    readme, results = tmp_path / "README.md", tmp_path / "results"
    readme.write_text(README)
    acc = [0.976, 0.969, 0.982, 0.98, 0.976]
    fake_sweep(results, R.S_DEMO, lambda s: {"test_accuracy": acc[s], "wall_seconds": 9.0 + s})
    status = R.render(readme, results)
    assert status["demo"] == "measured" and status["randman"] == "no finished sweep"
    text = readme.read_text()
    # everything outside the markers is untouched, the markers stay, the old numbers go
    outside = re.sub(r"<!-- results:(\w+):begin -->.*?<!-- results:\1:end -->", "", text,
                     flags=re.S)
    assert outside == re.sub(r"<!-- results:(\w+):begin -->.*?<!-- results:\1:end -->", "",
                             README, flags=re.S)
    assert "0.0040" not in text and "old hand-typed" not in text
    rows = _rows_text(readme, "classification")
    assert rows[0] == ("| digits, 64 -> 128 LIF -> 10 LIF, rate-coded T=25, count CE (`make "
                       "demo`) | 0.976 (0.969-0.982) | 11 s | logistic regression 0.969, MLP "
                       "0.978 (sklearn on the seed-0 split; fixed text, not re-measured) |")
    assert all(R.NOT_MEASURED in r for r in rows[1:]) and len(rows) == 4
    assert all(R.NOT_MEASURED in r for r in _rows_text(readme, "apps"))
    line = [ln for ln in text.splitlines() if ln.startswith("Median (min-max)")]
    assert len(line) == 1  # the apps table measured nothing: no provenance there
    assert all(w in line[0] for w in ("seeds 0-4", "abc1234", "clean tree", "Test CPU 9000",
                                      "torch 2.13.0", "2 torch threads"))
    assert re.search(r"\d{4}-\d\d-\d\d \(UTC\)", line[0])
    # rendering twice gives the same file (the markers survive their own output)
    R.render(readme, results)
    assert readme.read_text() == text


def test_every_row_renders_from_its_keys(tmp_path):
    """Fake sweeps holding exactly the keys the templates name: every row is filled in, with
    no field left over, and the side tables (tbptt/compare/memory) are read."""
    readme, results = tmp_path / "README.md", tmp_path / "results"
    readme.write_text(README)
    for sweep in R.all_sweeps():
        fake_sweep(results, sweep, _generic(sweep))
    status = R.render(readme, results)
    assert set(status.values()) == {"measured"}
    rows = _rows_text(readme, "classification") + _rows_text(readme, "apps")
    assert len(rows) == len(R.ROWS)
    for row in rows:
        assert R.NOT_MEASURED not in row and "{" not in row and "n/a" not in row, row
        assert re.search(r"\d\.\d+ \(\d\.\d+-\d\.\d+\)", row), row
    # the sparsity row reads the regression row's sweep for the rate without the penalty
    sparse = [r for r in rows if "sparsity_weight=1e-3" in r][0]
    base = _generic(R.S_REG)
    rate = sorted(base(s)["firing_rate_hz"] for s in SEEDS)
    assert sparse.count("Hz") == 2 and f"{rate[2]:.0f} Hz (the `regression` row" in sparse


def test_a_partial_run_keeps_the_rows_it_did_not_measure(tmp_path):
    """``--only`` on a machine without the other rows' sweep folders: the other rows keep
    their lines and the provenance line stays; the re-measured row is marked with its commit
    and gets a provenance sentence of its own."""
    readme, results = tmp_path / "README.md", tmp_path / "results"
    readme.write_text(README)
    for sweep in R.all_sweeps():
        fake_sweep(results, sweep, _generic(sweep))
    R.render(readme, results)
    before = {t: _rows_text(readme, t) for t in ("classification", "apps")}
    blocks = {t: R.current_block(readme.read_text(), t) for t in ("classification", "apps")}
    shutil.rmtree(results)
    fake_sweep(results, R.S_DEMO, lambda s: {"test_accuracy": 0.9 + 0.001 * s,
                                             "wall_seconds": 3.0})
    R.render(readme, results, only=["demo"])
    after = {t: _rows_text(readme, t) for t in ("classification", "apps")}
    assert after["apps"] == before["apps"]
    assert after["classification"][1:] == before["classification"][1:]
    demo = after["classification"][0]
    assert "0.902 (0.900-0.904)" in demo and "[re-measured" in demo and "abc1234" in demo
    text = readme.read_text()
    assert R.current_block(text, "apps") == blocks["apps"]  # a table with no re-measured row
    old_line = blocks["classification"].strip().splitlines()[-1]
    new_line = R.current_block(text, "classification").strip().splitlines()[-1]
    assert new_line.startswith(old_line + " Rows marked re-measured: Median (min-max)")
    # the same partial render again (e.g. --render-only after the run) adds no second sentence
    R.render(readme, results, only=["demo"])
    assert readme.read_text() == text
    # without --only a render is the full one, and blanks what it cannot measure
    R.render(readme, results)
    assert all(R.NOT_MEASURED in r for r in _rows_text(readme, "apps"))


def test_stale_sweeps_are_not_shown(tmp_path):
    readme, results = tmp_path / "README.md", tmp_path / "results"
    readme.write_text(README)
    fake_sweep(results, R.S_DEMO, _generic(R.S_DEMO), overrides=["epochs=3"])
    fake_sweep(results, R.S_MNIST1D, _generic(R.S_MNIST1D), config_change={"hidden": 7})
    status = R.render(readme, results)
    assert "not this row's command" in status["demo"]
    assert "another config" in status["mnist1d"] and "hidden" in status["mnist1d"]
    assert all(R.NOT_MEASURED in r for r in _rows_text(readme, "classification"))


def test_unfinished_sweep_and_optional_metrics(tmp_path):
    readme, results = tmp_path / "README.md", tmp_path / "results"
    readme.write_text(README)
    out = fake_sweep(results, R.S_DEMO, _generic(R.S_DEMO))
    (out / "summary.json").unlink()  # a sweep stopped before its summary
    gen = _generic(R.S_CONSTRAINTS)

    def values(s):  # two seeds where no penalty halved the spikes
        v = gen(s)
        if s < 2:
            del v["sparsity_drop_at_first_half_point"], v["sparsity_first_half_point_spike_ratio"]
        return v
    fake_sweep(results, R.S_CONSTRAINTS, values)
    R.render(readme, results)
    assert R.NOT_MEASURED in _rows_text(readme, "classification")[0]
    row = [r for r in _rows_text(readme, "apps") if r.startswith("| `constraints`")][0]
    assert "[3/5 seeds] points at" in row and "fewer spikes" in row


def test_markers_are_required(tmp_path):
    readme, results = tmp_path / "README.md", tmp_path / "results"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="results:classification:begin"):
        R.render(readme, results)


def test_readme_has_one_marker_pair_per_table():
    text = (ROOT / "README.md").read_text()
    for table in R.TABLES:
        assert text.count(f"<!-- results:{table}:begin -->") == 1
        assert text.count(f"<!-- results:{table}:end -->") == 1


def test_row_specs_are_valid_commands():
    """Every row's --set overrides are accepted by its app (checked as a run checks them)."""
    ids = [r.id for r in R.ROWS]
    assert len(ids) == len(set(ids))
    for sweep in R.all_sweeps():
        assert R.expected_config(sweep) is not None


def _check_keys(sweep, run_dir):
    written = R.flatten(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    for row in R.ROWS:
        if sweep not in row.sweeps():
            continue
        need = R.template_keys(row)[sweep.id] | {sweep.wall_key}
        missing = sorted(need - set(written) - set(row.optional))
        assert not missing, f"row {row.id}: {sweep.id} writes no {missing}"
        if sweep is row.sweep:
            fields = {m["key"][4:] for c in row.cells for m in R.FIELD.finditer(c)
                      if m["key"].startswith("cfg.")}
            assert fields <= set(config), f"row {row.id}: no config field {fields - set(config)}"


# The metric keys of every row, checked against a real (tiny) run of its command (10-60 s
# each); the demo's keys are checked on the end-to-end sweep below, in the quick suite.
@pytest.mark.slow
@pytest.mark.parametrize("sweep", [pytest.param(s, id=s.id) for s in R.all_sweeps()])
def test_row_keys_are_written_by_the_app(sweep, tmp_path):
    from spikegrad.apps import get_app
    from spikegrad.apps.config import apply_overrides

    app = get_app(sweep.app)
    cfg = apply_overrides(app.Config(), list(sweep.sets) + list(sweep.tiny)
                          + ["seed=0", "progress=false"])
    app.run(cfg, tmp_path / "run")
    _check_keys(sweep, tmp_path / "run")


def test_one_real_sweep_end_to_end(tmp_path):
    """A tiny row through the real `spikegrad sweep` (two seeds), rendered; a second call
    finds it done and runs nothing. Its runs also hold every key of the digits demo row
    (the same app and dataset)."""
    sweep = R.Sweep("tiny", "classification", ("epochs=1", "hidden=16"))
    row = R.Row("tiny", "classification", sweep,
                ("tiny digits ({cmd})", "{test_accuracy:.3f}", "{wall}", "none"))
    results, readme = tmp_path / "results", tmp_path / "README.md"
    readme.write_text(README)
    R.run_sweep(sweep, [0, 1], results)
    assert (results / "tiny" / "seed1" / "metrics.json").exists()
    _check_keys(R.S_DEMO, results / "tiny" / "seed0")
    prov = json.loads((results / "tiny" / "provenance.json").read_text())["sessions"]
    assert len(prov) == 1 and "finished" in prov[0]
    R.run_sweep(sweep, [0, 1], results)  # done: no new session
    assert len(json.loads((results / "tiny" / "provenance.json").read_text())["sessions"]) == 1
    R.render(readme, results, rows=[row])
    line = _rows_text(readme, "classification")[0]
    assert line.startswith("| tiny digits (`spikegrad run classification --set epochs=1 "
                           "--set hidden=16`) | ")
    assert re.search(r"\| \d\.\d{3}( \(\d\.\d{3}-\d\.\d{3}\))? \| \d+(\.\d)? s \| none \|$",
                     line), line
    assert "<!-- results:apps:begin -->\n| old | 0.0040 |" in readme.read_text()
