PY ?= python3

.PHONY: build test test-py lint bench clean

build:
	$(PY) -m pip install -e '.[test]'

test:
	SIPCORE_REQUIRE_EXTENSIONS=1 $(PY) -m pytest

test-py:
	SIPCORE_NO_EXTENSIONS=1 $(PY) -m pytest

lint:
	$(PY) -m ruff check sipcore tests bench
	$(PY) -m ruff format --check sipcore tests bench
	$(PY) -m mypy

bench:
	$(PY) bench/parse.py
	$(PY) bench/register.py

clean:
	rm -rf build dist *.egg-info csrc/*.c csrc/*.html sipcore/message/*.so
	find . -name __pycache__ -prune -exec rm -rf {} +
