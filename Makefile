# Set-up and main jobs. `make demo` and `make test` build .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
STAMP := $(VENV)/.xcorr-installed
OUT ?= demo-out
export NO_MKDOCS_2_WARNING := 1

WHEELS := .wheels
WHEEL_VENV := .venv-wheels

.PHONY: demo test venv docs bench clean check-wheels browser

venv: $(STAMP)

$(STAMP): pyproject.toml constraints-dev.txt requirements-dev.txt $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q -c constraints-dev.txt -r requirements-dev.txt -e '.[ray]' $(foreach p,$(PLUGIN_DIRS),-e $(p))
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xcorr demo --out $(OUT)

# The browser site's tests drive a real Chromium: Debian's package, installed here when we are root
# with apt; otherwise those tests fail and say how to install it (they never skip).
browser:
	@if [ -z "$$XCORR_CHROMIUM" ] && ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	  else echo "note: no chromium on PATH and not root: the browser tests will fail; install it with: sudo apt-get install chromium"; fi; \
	fi

test: $(STAMP) browser
	$(PY) -m pytest tests docs
	@set -e; for p in $(PLUGIN_DIRS); do echo "== plugin $$p"; (cd $$p && ../../$(PY) -m pytest tests); done
	$(VENV)/bin/mkdocs build --strict --quiet -d $(VENV)/site

# Build every wheel, install them (not editable) into a fresh venv, and check the installation
# from outside the source tree: what `pip install` of the packages gives a user. The third-party
# dependencies are linked from .venv, not installed a second time (6 GB; see scripts/share_deps.py).
check-wheels: $(STAMP)
	rm -rf $(WHEELS) $(WHEEL_VENV)
	$(PIP) wheel --disable-pip-version-check -q --no-deps --no-build-isolation -w $(WHEELS) . $(PLUGIN_DIRS)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(PY) scripts/share_deps.py $(VENV) $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install --disable-pip-version-check -q -c constraints-dev.txt $(WHEELS)/*.whl
	cd $$(mktemp -d) && $(abspath $(WHEEL_VENV))/bin/python $(abspath scripts/check_installed.py) $(abspath .)

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict -d site

bench: $(STAMP)
	$(PY) benchmarks/bench_features.py
	$(PY) benchmarks/bench_index.py
	$(PY) benchmarks/bench_jobs.py
	@if $(PY) -c "import xcorr_emd_corr" 2>/dev/null; then $(PY) benchmarks/bench_emd_corr.py; fi
	@if $(PY) -c "import xcorr_pairx" 2>/dev/null; then $(PY) benchmarks/bench_pairx.py; fi
	@if $(PY) -c "import xcorr_scc_counterfactual" 2>/dev/null; then $(PY) benchmarks/bench_scc.py; fi
	@if $(PY) -c "import xcorr_chm_corr" 2>/dev/null; then $(PY) benchmarks/bench_chm_corr.py; fi
	@if $(PY) -c "import xcorr_protoknn" 2>/dev/null; then $(PY) benchmarks/bench_protoknn.py; fi
	@if $(PY) -c "import xcorr_cgc" 2>/dev/null; then $(PY) benchmarks/bench_cgc.py; fi
	@if $(PY) -c "import timm, xcorr_emd_corr, xcorr_pairx" 2>/dev/null; then $(PY) benchmarks/bench_vit.py; fi
	@if $(PY) -c "import xcorr_human_team_sim" 2>/dev/null; then $(PY) benchmarks/bench_team.py; fi
	$(PY) benchmarks/bench_browse.py

clean:
	rm -rf $(VENV) site $(OUT) $(WHEELS) $(WHEEL_VENV)
