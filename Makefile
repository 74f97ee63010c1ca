# Cairn build and test entry points. `make test` is the command CI runs (.ci/run).
GO        ?= go
BUF       := $(GO) tool -modfile=tools/go.mod buf
PKGS      := ./...

.PHONY: all build cluster images compose-up compose-down compose-smoke test vet fmt-check proto proto-check bench bench-peers clean

# Compose v2 plugin when present, else the v1 docker-compose binary.
COMPOSE   ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

all: build

## build: static binaries bin/cairnd and bin/cairnctl.
build:
	CGO_ENABLED=0 $(GO) build -o bin/cairnd ./cmd/node
	CGO_ENABLED=0 $(GO) build -o bin/cairnctl ./cmd/ctl

## cluster: a local 3-node cluster on loopback in the foreground (data in .cairn/dev); Ctrl-C stops it.
cluster: build
	bin/cairnctl dev --cairnd bin/cairnd

## images: the FROM scratch image cairn:dev with static cairnd and cairnctl built on the host.
images: build
	mkdir -p .docker/rootfs/data .docker/rootfs/tmp
	chmod 1777 .docker/rootfs/tmp
	docker build -t cairn:dev .

## compose-up: build the image and start the 3-node compose cluster (gRPC on 127.0.0.1:17101-17103).
compose-up: images
	$(COMPOSE) up -d
	@echo "cluster starting: bin/cairnctl --addr 127.0.0.1:17101,127.0.0.1:17102,127.0.0.1:17103 status"

## compose-down: stop the compose cluster and remove its volumes.
compose-down:
	$(COMPOSE) down -v --remove-orphans

## compose-smoke: up, health, append/read on every port, kill the leader, heal, down (skips without Docker).
compose-smoke:
	bash scripts/compose-smoke.sh

## test: formatting, vet, generated-code freshness, then every test with the race detector.
## Packages run one at a time (-p 1): systemtest and jepsen-lite each start real clusters of
## processes, and side by side on 2 cores their timing-based checks flake.
test: fmt-check vet proto-check
	$(GO) test -race -count=1 -p 1 -timeout 12m $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

## proto: regenerate protobuf code with the pinned generators in tools/.
proto:
	$(BUF) generate

## proto-check: fail if the committed generated code differs from what `make proto` produces.
proto-check: proto
	$(BUF) lint
	@git diff --exit-code -- '*.pb.go' || (echo "generated protobuf code is stale: run make proto and commit"; exit 1)

## bench: regression check in a few minutes: the storage micro-benchmarks in short mode, then the
## load tool (cmd/bench) against a fresh local 3-node Cairn cluster in QUICK mode, printing the
## table (docs/benchmarks.md has the full runs). Not part of `make test`.
BENCH_MICRO := ApplyBatch|SnapshotPersist|Append|ScanForward|ReadRandom|Fdatasync|BoltStoreLogs
bench:
	$(GO) test -short -run '^$$' -bench '$(BENCH_MICRO)' -benchtime 200ms -benchmem ./segment/ ./fsm/ ./bench/floor/
	SYSTEMS=cairn QUICK=1 bash bench/peers/run.sh

## bench-peers: the side-by-side benchmark (Cairn, NATS JetStream with sync_interval always, etcd),
## pinned servers installed into .bench/bin; about 15 minutes. QUICK=1 for a ~2 minute smoke run.
## Writes .bench/results/<time>/table.md for docs/benchmarks.md. Not part of `make test`.
bench-peers:
	bash bench/peers/run.sh

clean:
	rm -rf bin .docker

## jepsen: the long jepsen-lite suites for nightly use (about 30 minutes on 2 cores): every planted
## bug caught on a -tags jepsenbugs build and the same scenarios valid on the real build, then the
## smoke and nightly scenarios. Runs land in jepsen-lite/runs/ (see jepsen-lite/README.md).
.PHONY: jepsen
jepsen:
	$(GO) run ./jepsen-lite suite --set canary
	$(GO) run ./jepsen-lite suite --set smoke,nightly
