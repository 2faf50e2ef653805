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
run: ## Run the manager on embedded defaults (SQLite in ./passerelle-data).
	$(GO) run ./cmd/manager

.PHONY: test
test: ## Run every test with the race detector.
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: bench
bench: ## Run the benchmarks (PostgreSQL ones need PASSERELLE_TEST_POSTGRES_URL).
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -benchmem ./...

.PHONY: lint
lint: ## Check formatting and vet the code.
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod verify

.PHONY: tools
tools: ## Install the pinned tools used by tests (grpcurl) into .tools/bin.
	mkdir -p $(GOBIN)
	GOBIN=$(GOBIN) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

.PHONY: clean
clean: ## Remove build outputs.
	rm -rf $(BIN)
