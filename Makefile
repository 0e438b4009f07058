# Every target bootstraps .venv from nothing: torch==2.13.0 first (the CPU wheel; a bare
# `torch` would pull a multi-GB CUDA build), then spikegrad in editable mode with its extras
# (gpu: triton, whose kernels the tests check in its interpreter when there is no GPU).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all bench results interop-check docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q triton==3.9.0  # pinned: the tests compile its kernels with its API
	$(BIN)/pip install -q -e '.[apps,dev,fast,gpu,nir,bci,log,tonic,docs,molecules]'
	$(BIN)/pip install -q --no-deps torchattacks==3.5.1  # its metadata would pull torchvision
	$(BIN)/pip install -q --no-deps molsets==0.3.1  # the MOSES SMILES; its metadata pins pomegranate
	touch $(STAMP)

demo: setup
	$(BIN)/spikegrad run classification

# The second leg re-runs the compiled-kernel tests as on another processor: numba generating
# code for a generic x86-64/ARM target (no AVX2/AVX-512: the vector paths lower to SSE/NEON),
# torch's and MKL's own kernels capped at AVX2 (no-ops where that is all there is), and bounds
# checking on; its own numba cache dir, since cached kernels would be loaded unchecked and for
# this CPU. Option grids keep every value (not every pair) there: SPIKEGRAD_COVERING=1
# (tests/cases.py); the first leg runs the pairwise arrays natively. The torch.compile/export
# tests (test_ops) trace the same kernels the parity tests run, so they run in the first leg
# only. The legs run side by side, the first split in two processes (the apps, scripts,
# functional, interop and top-level tests; the rest), every process one thread: OpenMP teams that each want both cores
# spin against each other (a 5 s test took 168 s), and the thread-splitting tests set their own
# counts. The other processes' output follows the first's, and any failing fails the target.
PORTABLE_LOG := .test-portable.log
LEG1B_LOG := .test-leg1b.log
LEG1B := tests/apps tests/scripts tests/functional tests/interop $(wildcard tests/test_*.py)
test: setup
	@SPIKEGRAD_COVERING=1 NUMBA_CPU_NAME=generic NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=$(CURDIR)/.numba-generic-boundscheck \
		ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 OMP_NUM_THREADS=1 \
		$(BIN)/python -m pytest tests/kernels tests/learning/test_eprop_stream.py --ignore=tests/kernels/test_triton_leaky.py \
		--ignore=tests/kernels/test_ops.py \
		> $(PORTABLE_LOG) 2>&1 & portable=$$!; \
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest $(LEG1B) > $(LEG1B_LOG) 2>&1 & half=$$!; \
	echo "make test: leg 1 (the suite, in two processes) and leg 2 (kernels as on another processor) running"; \
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests $(addprefix --ignore=,$(LEG1B)); main=$$?; \
	wait $$half; other=$$?; \
	echo "--- leg 1, second process: $(LEG1B)"; \
	cat $(LEG1B_LOG); \
	wait $$portable; second=$$?; \
	echo "--- leg 2: kernel tests, generic numba target, torch/MKL capped at AVX2, bounds checks"; \
	cat $(PORTABLE_LOG); \
	test $$main -eq 0 -a $$other -eq 0 -a $$second -eq 0

test-all: setup
	$(BIN)/python -m pytest -m ''

BENCH_ARGS ?=

# Peers in benchmarks/.venvs/<lib> (built once, stamp-checked), then all workloads, interleaved;
# writes benchmarks/out/results.json and benchmarks/RESULTS.md. Smoke test:
# make bench BENCH_ARGS=--quick
bench: setup
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# NIR exchange with snnTorch and Norse, both ways, in their pinned peer venvs (built once by
# benchmarks/setup_peers.py); one line per peer, non-zero on any failure. Not part of `test`.
interop-check: setup
	$(BIN)/python benchmarks/nir_crosscheck.py

RESULTS_ARGS ?=

# The README's results tables: each row's command over seeds 0-4 in results/<row>/ (resumable,
# finished sweeps skipped), then the tables between the README's results markers rewritten as
# median (min-max). E.g. make results RESULTS_ARGS="--only demo,regression" or --render-only
results: setup
	$(BIN)/python scripts/results.py $(RESULTS_ARGS)

# The documentation site in site/ (open site/index.html): API reference from the docstrings,
# tutorials executed during the build (markdown-exec), app pages with the README's results.
# Offline (no fonts, plugins or data fetched) and strict: any warning fails the build.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

clean:
	rm -rf $(VENV) runs .pytest_cache site
