# Two entry points: `make app` (the Gradio app) and `make test` (the whole suite).
# Each creates or updates .venv by itself; the stamp makes a second run instant.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 7860
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: app test test-slow lint venv system-packages clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	# torch first (pinned CPU build), then the project with its dev and fhe extras.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e '.[dev,fhe]'
	touch $(STAMP)

app: $(STAMP)
	$(VENV)/bin/htr app --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Debian packages for the synthetic CPU recipe (root): the handwriting fonts that system_fonts adds to
# training (listed once, in htr.data.synthetic) and tcmalloc (`htr bench malloc` says why).
system-packages: $(STAMP)
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4 \
	    $$($(PY) -c 'from htr.data.synthetic import SYSTEM_HANDWRITING_FONTS as f; print(*sorted(set(f.values())))')

clean:
	rm -rf $(VENV) .pytest_cache
