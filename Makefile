# Cairn build and test entry points. `make test` is the command CI runs (.ci/run).
GO        ?= go
BUF       := $(GO) tool -modfile=tools/go.mod buf
PKGS      := ./...

.PHONY: all build cluster images compose-tls compose-up compose-down compose-smoke test vet fmt-check proto proto-check bench bench-peers clean

# Compose v2 plugin when present, else the v1 docker-compose binary.
COMPOSE   ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

all: build

## build: static binaries bin/cairnd and bin/cairnctl.
build:
	CGO_ENABLED=0 $(GO) build -o bin/cairnd ./cmd/node
	CGO_ENABLED=0 $(GO) build -o bin/cairnctl ./cmd/ctl

## cluster: a local 3-node cluster on loopback in the foreground, mutual TLS on (data and TLS
## material in .cairn/dev; cairnctl prints the CAIRN_CA/CERT/KEY to use); Ctrl-C stops it.
cluster: build
	bin/cairnctl dev --cairnd bin/cairnd

## images: the FROM scratch image cairn:dev with static cairnd and cairnctl built on the host.
images: build
	mkdir -p .docker/rootfs/data .docker/rootfs/tmp
	chmod 1777 .docker/rootfs/tmp
	docker build -t cairn:dev .

## compose-tls: TLS material of the compose cluster in .cairn/compose-tls (gitignored), made on the
## host by `cairnctl tls init` once (the CA is kept). Development material: the containers run as
## uid 10001, so the folder and the keys in it are made readable to them (0755/0644).
COMPOSE_TLS := .cairn/compose-tls
compose-tls: build
	@test -f $(COMPOSE_TLS)/node-node3.key || bin/cairnctl tls init --dir $(COMPOSE_TLS) \
		--nodes node1,node2,node3 --hosts 127.0.0.1,localhost --cluster-name compose
	chmod 0755 $(COMPOSE_TLS)
	chmod 0644 $(COMPOSE_TLS)/node-*.key $(COMPOSE_TLS)/gossip.key

## compose-up: build the image and start the 3-node compose cluster with mutual TLS
## (gRPC on 127.0.0.1:17101-17103).
compose-up: images compose-tls
	$(COMPOSE) up -d
	@echo "cluster starting: bin/cairnctl --ca $(COMPOSE_TLS)/ca.crt --cert $(COMPOSE_TLS)/client-admin.crt --key $(COMPOSE_TLS)/client-admin.key --addr 127.0.0.1:17101,127.0.0.1:17102,127.0.0.1:17103 status"

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

## fuzz: run every fuzz target for FUZZTIME (default 30s) each, one worker, temp files in /dev/shm
## when it exists (the FSM targets fsync). `make test` already runs the committed seed corpora
## (testdata/fuzz/) as ordinary tests. A crasher is written to testdata/fuzz/<target>/: fix it and
## commit the file as a regression seed.
FUZZTIME    ?= 30s
FUZZTMP     := $(shell test -d /dev/shm && echo /dev/shm || echo $${TMPDIR:-/tmp})
FUZZTARGETS := ./fsm:FuzzApplyEntry ./fsm:FuzzApplyFields ./api:FuzzRequest
.PHONY: fuzz
fuzz:
	@set -e; for t in $(FUZZTARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		TMPDIR=$(FUZZTMP) $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) -parallel 1 $$pkg; \
	done
