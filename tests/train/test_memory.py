import torch

from spikegrad.train.memory import allocator_peak_mb


def test_peak_counts_a_temporary_and_ignores_what_was_allocated_before():
    before = torch.ones(1 << 20)  # 4 MiB held before: not part of the peak

    def work():
        a = torch.empty(1 << 19)  # 2 MiB
        b = torch.empty(1 << 18)  # 1 MiB, while a is alive
        del a, b
        torch.empty(1 << 18)      # 1 MiB after both were freed: no new peak

    peak = allocator_peak_mb(work)
    assert 3.0 <= peak < 3.1
    assert before.numel() == 1 << 20


def test_errors_of_the_work_propagate(capfd):
    def boom():
        raise RuntimeError("inside")

    try:
        allocator_peak_mb(boom)
    except RuntimeError as e:
        assert "inside" in str(e)
    else:  # pragma: no cover
        raise AssertionError("the error was swallowed")
    assert "profiler_start" not in capfd.readouterr().err
