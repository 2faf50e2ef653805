# Passerelle's build. Strict shell: every recipe fails on the first error.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules --warn-undefined-variables

GO        ?= go
BIN       ?= bin
GOBIN     ?= $(CURDIR)/.tools/bin
# Tools, pinned.
GRPCURL_VERSION ?= v1.9.3
BUF_VERSION ?= v1.75.0
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.5.1
BUF       ?= $(GOBIN)/buf
# protoc and the gRPC plugins the Python and Java clients are generated with:
# Debian's, to match Debian's runtimes (python3-protobuf, python3-grpcio,
# libprotobuf-java, libgrpc-java).
DEBIAN_PROTOC_TOOLS ?= /usr/bin/protoc /usr/bin/grpc_python_plugin /usr/bin/grpc_java_plugin
DEBIAN_PROTOC_PACKAGES ?= protobuf-compiler protobuf-compiler-grpc protobuf-compiler-grpc-java-plugin
# Benchmarks: how long each one runs (go test -benchtime).
BENCHTIME ?= 3s

.PHONY: help
help: ## Show this help.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build every binary into ./bin.
	mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

.PHONY: run
run: ## Run Passerelle on embedded defaults (data in ./passerelle-data).
	@echo "Building Passerelle into $(BIN)/ (the first build fetches modules and compiles for a few minutes; later ones take seconds)..."
	@mkdir -p $(BIN) && $(GO) build -o $(BIN)/passerelle ./cmd/passerelle
	exec $(BIN)/passerelle serve

.PHONY: test
test: ## Run every test with the race detector.
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: bench
bench: ## Run the benchmarks (PostgreSQL ones need PASSERELLE_TEST_POSTGRES_URL).
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -benchmem ./...

.PHONY: bench-bridge
bench-bridge: ## Load-test the MQTT bridge against a local Mosquitto (scripts/bench-bridge.sh).
	scripts/bench-bridge.sh

.PHONY: lint
lint: ## Check formatting and vet the code.
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod verify
	@$(MAKE) --no-print-directory checkfiles

.PHONY: checkfiles
checkfiles: ## Fail when a tracked file is over 1 MB (a binary or build output), lockfiles and gen/ aside.
	@big="$$(git ls-files -z | xargs -0 -r stat -c '%s %n' | awk '$$1 > 1048576 && $$2 !~ /(^gen\/|(^|\/)[^\/]*lock[^\/]*$$)/ {print "  " $$2 " (" $$1 " bytes)"}')"; \
	if [[ -n "$$big" ]]; then echo "tracked files over 1 MB (binaries and build outputs are never committed):"; echo "$$big"; exit 1; fi

.PHONY: tools
tools: ## Install the pinned tools (grpcurl, buf and its protoc plugins, jaeger) into .tools/bin, and protoc-gen-es into clients/ts.
	mkdir -p $(GOBIN)
	GOBIN=$(GOBIN) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	GOBIN=$(GOBIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	GOBIN=$(GOBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(GOBIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@# Jaeger v1.76.0 (the backend of the traces test), pinned by its own module in tools/jaeger
	@# (its go.mod has replace directives, so `go install pkg@version` refuses it): ~10 min the first time.
	cd tools/jaeger && GOBIN=$(GOBIN) $(GO) install github.com/jaegertracing/jaeger/cmd/jaeger
	@# protoc-gen-es (and the TypeScript client's other packages), pinned by clients/ts/package-lock.json.
	npm ci --prefix clients/ts --no-audit --no-fund --ignore-scripts --loglevel=error
	@# protoc and the gRPC plugins for Python and Java come from Debian, to match its runtimes.
	@missing=""; for f in $(DEBIAN_PROTOC_TOOLS); do [[ -x "$$f" ]] || missing="$$missing $$f"; done; \
	if [[ -n "$$missing" ]]; then echo "missing:$$missing"; echo "install them with: apt-get install $(DEBIAN_PROTOC_PACKAGES)"; exit 1; fi

# Generated client code: make generate empties these folders first, so a file
# the proto no longer makes does not linger; checkgenerate checks them.
CLIENT_GEN_DIRS := clients/ts/src/gen clients/python/src/passerelle/hub/v1 clients/java/src/main/java/io/github/passerelleiot/hub/v1 \
	clients/python/src/google/rpc clients/java/src/main/java/com/google/rpc

.PHONY: generate
generate: ## Lint the protos and regenerate gen/ and the clients' code (run make tools first).
	$(BUF) lint
	rm -rf $(CLIENT_GEN_DIRS)
	$(BUF) generate
	@# google.rpc.Status and ErrorInfo for the clients (clients/proto/README.md).
	$(BUF) generate clients/proto --template buf.gen.rpc.yaml

.PHONY: checkgenerate
checkgenerate: generate ## Fail when gen/, the clients' generated code or proto/ differ from what is committed.
	@out="$$(git status --porcelain gen proto $(CLIENT_GEN_DIRS))"; if [[ -n "$$out" ]]; then echo "generated code is out of date (run make generate and commit):"; echo "$$out"; exit 1; fi

.PHONY: clients
clients: ## Build the hub clients (TypeScript, Python, Java), run their tests and demos against passerelle serve (scripts/clients.sh).
	scripts/clients.sh

# The web console: TypeScript sources in services/console/web, built by Vite
# into services/console/dist, which is committed and embedded in the Go
# binaries (so make run and go run need no Node).
CONSOLE_WEB := services/console/web

.PHONY: console
console: ## Build the web console (npm ci + vite build) into services/console/dist.
	npm ci --prefix $(CONSOLE_WEB) --no-audit --no-fund --ignore-scripts --loglevel=error
	npm run --prefix $(CONSOLE_WEB) build

.PHONY: checkconsole
checkconsole: console ## Fail when services/console/dist differs from a fresh build of the sources.
	@out="$$(git status --porcelain services/console/dist)"; if [[ -n "$$out" ]]; then echo "the console's built assets are out of date (run make console and commit):"; echo "$$out"; git diff --stat services/console/dist; exit 1; fi

.PHONY: test-console
test-console: ## Run the console's end-to-end tests in headless Chromium against passerelle serve (scripts/console.sh).
	scripts/console.sh

.PHONY: clean
clean: ## Remove build outputs.
	rm -rf $(BIN)
