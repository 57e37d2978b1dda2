# Two entry points for a fresh machine (Python 3.11, pip, gcc): `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==24.3.1
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# Until the show exists: train a small flow briefly on the bundled-path CIFAR-10 and evaluate it.
demo: $(STAMP)
	$(BIN)/flowvj train --preset tiny --data ../shared/data/cifar10/train --test-data ../shared/data/cifar10/test \
		--out runs/demo --max-minutes 2 --test-limit 1000
	$(BIN)/flowvj eval --model runs/demo/ckpt.pt --data ../shared/data/cifar10/test --limit 1000 --json

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build src/*.egg-info
