"""glibc's thresholds set at import: large buffers are reused from the heap instead of being
mapped and faulted in afresh at every step."""

import os
import subprocess
import sys
import textwrap

import pytest

from spikegrad.kernels import allocator

PROBE = textwrap.dedent("""
    import resource, torch, spikegrad
    from spikegrad.kernels import allocator
    faults = []
    for _ in range(6):  # a 64 MiB buffer per "step", written, then freed
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = torch.ones(16 << 20)
        del t
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    print(allocator._done, min(faults[1:]))
""")


def _probe(**env):
    base = {k: v for k, v in os.environ.items()
            if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "SPIKEGRAD_MALLOPT")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_import_sets_the_thresholds_and_buffers_stop_faulting():
    tuned, faults = _probe()
    if not tuned:
        pytest.skip("not glibc")
    untuned, faults_off = _probe(SPIKEGRAD_MALLOPT="0")
    assert not untuned
    # 64 MiB is 16384 pages of 4 KiB: mapped afresh every time without the setting
    assert faults_off > 10000
    assert faults < 100


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("name,value", [("MALLOC_MMAP_THRESHOLD_", "268435456"),
                                        ("MALLOC_TRIM_THRESHOLD_", "1073741824")])
def test_one_variable_set_by_the_user_the_other_still_set(name, value):
    """Either variable alone leaves glibc's other threshold at its default, under which the
    buffers fault in afresh every step; import sets the other one."""
    tuned, faults = _probe(**{name: value})
    if not tuned:
        pytest.skip("not glibc")
    assert faults < 100


def test_the_users_choice_wins(monkeypatch):
    monkeypatch.setattr(allocator, "_done", None)
    assert allocator.tune_allocator({"MALLOC_MMAP_THRESHOLD_": "131072",
                                     "MALLOC_TRIM_THRESHOLD_": "131072"}) is False
    monkeypatch.setattr(allocator, "_done", None)
    assert allocator.tune_allocator({"SPIKEGRAD_MALLOPT": "0"}) is False
