# Two entry points for a fresh machine (Python 3.11, pip, gcc): `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The workplace's copy of CIFAR-10 when present; otherwise the official archive is downloaded.
CIFAR := $(if $(wildcard ../shared/data/cifar10/train),../shared/data/cifar10,cifar10 --download)

.PHONY: demo test setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# Until the show exists: train a small flow for two minutes (continuing on later runs), then
# evaluate it on 1,000 test images.
demo: $(STAMP)
	$(BIN)/flowvj train --preset tiny --data $(CIFAR) --out runs/demo --resume --max-minutes 2 \
		--test-limit 1000
	$(BIN)/flowvj eval --model runs/demo/ckpt.pt --data $(CIFAR) --limit 1000 --json

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build src/*.egg-info
