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
tools: ## Install the pinned tools (grpcurl, buf and its protoc plugins) into .tools/bin.
	mkdir -p $(GOBIN)
	GOBIN=$(GOBIN) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	GOBIN=$(GOBIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	GOBIN=$(GOBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(GOBIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

.PHONY: generate
generate: ## Lint the protos and regenerate gen/ (run make tools first).
	$(BUF) lint
	$(BUF) generate

.PHONY: checkgenerate
checkgenerate: generate ## Fail when gen/ or proto/ differ from what is committed.
	@out="$$(git status --porcelain gen proto)"; if [[ -n "$$out" ]]; then echo "generated code is out of date (run make generate and commit):"; echo "$$out"; exit 1; fi

.PHONY: clean
clean: ## Remove build outputs.
	rm -rf $(BIN)
