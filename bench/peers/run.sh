#!/usr/bin/env bash
# Side-by-side benchmark: Cairn, NATS JetStream and etcd, 3 nodes each on 127.0.0.1, measured with
# one load tool (peerbench: bench/load plus the drivers of bench/peers) and identical workloads.
#
#   bash bench/peers/run.sh               # full run (about 15 minutes on 2 cores)
#   QUICK=1 bash bench/peers/run.sh       # smoke run (about 3 minutes): short runs, one each
#   SYSTEMS="cairn" QUICK=1 bash bench/peers/run.sh   # Cairn only (what `make bench` does)
#
# Environment:
#   SYSTEMS      systems to run, in order (default "cairn nats-always etcd"; also: nats-default)
#   QUICK=1      2 s warm-up, 3 s runs, 1 run, 20,000 events read back
#   OUT          results directory (default .bench/results/<UTC time>); table.md is the table
#   BENCH_CACHE  where the pinned servers and tools are built (default .bench)
#   BASE_PORT    first of the ports used (default 24000: 24101-24513, below the kernel's
#                ephemeral range 32768-60999, where outgoing connections could take them)
#   CAIRND_ARGS  extra cairnd flags (e.g. "--pprof")
#
# Per system: build/install it, start a fresh 3-node cluster, wait until it serves appends, then
# run the workloads in order; the first one starts with a discarded warm-up run (a fresh NATS
# cluster is slower for its first 30-60 s). Each append workload is the median of RUNS runs.
# Every node's RSS is sampled each second during the 256-client workload, and every workload
# reports the CPU time the three nodes spent per event (less noisy than throughput on a shared box). Every process and
# temporary directory is removed on exit, also on failure or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NATS_VERSION=v2.15.2
ETCD_VERSION=v3.6.17
SYSTEMS=${SYSTEMS:-"cairn nats-always etcd"}
CACHE=${BENCH_CACHE:-$ROOT/.bench}
BIN=$CACHE/bin
OUT=${OUT:-$CACHE/results/$(date -u +%Y%m%dT%H%M%SZ)}
BASE_PORT=${BASE_PORT:-24000}
CAIRND_ARGS=${CAIRND_ARGS:-}
if [[ ${QUICK:-0} == 1 ]]; then
	WARMUP=2s DURATION=3s RUNS=1 READ_EVENTS=20000
else
	WARMUP=10s DURATION=15s RUNS=3 READ_EVENTS=100000
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-peers.XXXXXX")
NODE_PIDS=()
FAILED=()
SAMPLER_PID=

log() { printf '%s run.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

stop_nodes() {
	local pid
	for pid in "${NODE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${NODE_PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	NODE_PIDS=()
}

cleanup() {
	local rc=$?
	if [[ -n $SAMPLER_PID ]]; then kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; fi
	stop_nodes
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- install ------------------------------------------------------------------------------

mkdir -p "$BIN" "$OUT"

need() { [[ " $SYSTEMS " == *" $1"* ]]; }

install_nats() {
	if "$BIN/nats-server" --version 2>/dev/null | grep -q "${NATS_VERSION#v}"; then return; fi
	log "installing nats-server $NATS_VERSION"
	GOBIN=$BIN CGO_ENABLED=0 go install "github.com/nats-io/nats-server/v2@$NATS_VERSION"
}

# etcd's own modules carry replace directives, so `go install go.etcd.io/etcd/...@v3.6.x` is
# refused; a throwaway module that requires go.etcd.io/etcd/server/v3 and calls etcdmain builds
# the same server.
install_etcd() {
	if "$BIN/etcd" --version 2>/dev/null | grep -q "etcd Version: ${ETCD_VERSION#v}"; then return; fi
	log "building etcd $ETCD_VERSION from a wrapper module"
	local w=$WORK/etcdwrap
	mkdir -p "$w"
	cat >"$w/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
	(cd "$w" && go mod init etcdwrap >/dev/null 2>&1 &&
		go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 &&
		go mod tidy >/dev/null 2>&1 &&
		CGO_ENABLED=0 go build -o "$BIN/etcd" .)
}

need nats && install_nats
need etcd && install_etcd
log "building cairnd and the load tool"
(cd "$ROOT" && CGO_ENABLED=0 go build -o bin/cairnd ./cmd/node)
if [[ $SYSTEMS == cairn ]]; then
	# Cairn alone needs no peer driver: the main module's tool avoids the peers' dependencies.
	(cd "$ROOT" && go build -o "$BIN/loadtool" ./cmd/bench)
else
	(cd "$ROOT/bench/peers" && go build -o "$BIN/loadtool" .)
fi
LOAD=$BIN/loadtool

# ---- clusters -----------------------------------------------------------------------------

p() { echo $((BASE_PORT + $1)); }

start_cairn() {
	local i joins=""
	for i in 1 2 3; do joins+="${joins:+,}127.0.0.1:$(p $((300 + i)))"; done
	for i in 1 2 3; do
		mkdir -p "$WORK/cairn/n$i"
		# Plaintext (--dev-insecure), as NATS and etcd run here: the comparison is of the
		# replication and storage paths, not of TLS. Durability is the default (quorum fsync).
		# shellcheck disable=SC2086 # CAIRND_ARGS is a list of flags
		"$ROOT/bin/cairnd" --node-id "n$i" --data-dir "$WORK/cairn/n$i" --dev-insecure \
			--grpc-bind "127.0.0.1:$(p $((100 + i)))" --raft-bind "127.0.0.1:$(p $((200 + i)))" \
			--gossip-bind "127.0.0.1:$(p $((300 + i)))" --join "$joins" --bootstrap-expect 3 \
			--metrics-bind "127.0.0.1:$(p $((350 + i)))" --log-level warn $CAIRND_ARGS \
			>"$OUT/cairn-n$i.log" 2>&1 &
		NODE_PIDS+=($!)
	done
	ADDRS="127.0.0.1:$(p 101),127.0.0.1:$(p 102),127.0.0.1:$(p 103)"
	DRIVER=cairn
}

# start_nats always|default
start_nats() {
	local mode=$1 i routes=""
	for i in 1 2 3; do routes+="${routes:+, }nats-route://127.0.0.1:$(p $((410 + i)))"; done
	for i in 1 2 3; do
		mkdir -p "$WORK/nats/n$i"
		{
			echo "server_name: n$i"
			echo "listen: 127.0.0.1:$(p $((400 + i)))"
			echo "jetstream {"
			echo "  store_dir: \"$WORK/nats/n$i\""
			[[ $mode == always ]] && echo "  sync_interval: always"
			echo "}"
			echo "cluster { name: bench, listen: 127.0.0.1:$(p $((410 + i))), routes: [$routes] }"
		} >"$WORK/nats/n$i.conf"
		"$BIN/nats-server" -c "$WORK/nats/n$i.conf" >"$OUT/nats-$mode-n$i.log" 2>&1 &
		NODE_PIDS+=($!)
	done
	ADDRS="127.0.0.1:$(p 401),127.0.0.1:$(p 402),127.0.0.1:$(p 403)"
	DRIVER=nats
}

start_etcd() {
	local i cluster=""
	for i in 1 2 3; do cluster+="${cluster:+,}e$i=http://127.0.0.1:$(p $((510 + i)))"; done
	for i in 1 2 3; do
		"$BIN/etcd" --name "e$i" --data-dir "$WORK/etcd/e$i" \
			--listen-client-urls "http://127.0.0.1:$(p $((500 + i)))" \
			--advertise-client-urls "http://127.0.0.1:$(p $((500 + i)))" \
			--listen-peer-urls "http://127.0.0.1:$(p $((510 + i)))" \
			--initial-advertise-peer-urls "http://127.0.0.1:$(p $((510 + i)))" \
			--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token bench \
			--quota-backend-bytes $((8 * 1024 * 1024 * 1024)) --log-level warn \
			>"$OUT/etcd-e$i.log" 2>&1 &
		NODE_PIDS+=($!)
	done
	ADDRS="127.0.0.1:$(p 501),127.0.0.1:$(p 502),127.0.0.1:$(p 503)"
	DRIVER=etcd
}

# wait_ready: a short append run succeeds (the cluster has a leader and serves writes).
wait_ready() {
	local i
	for i in $(seq 60); do
		if "$LOAD" --system "$DRIVER" --addrs "$ADDRS" --duration 200ms --op-timeout 2s >/dev/null 2>&1; then
			return 0
		fi
		for pid in "${NODE_PIDS[@]}"; do
			kill -0 "$pid" 2>/dev/null || { log "a node exited; see $OUT/*.log"; return 1; }
		done
		sleep 1
	done
	log "$1: no working cluster after 60 s; see $OUT/*.log"
	return 1
}

# rss_sampler SYSTEM STOPFILE: every second, the RSS of every node; at the stop file, the peaks.
rss_sampler() {
	local system=$1 stop=$2 i pid kib
	local -a peak=(0 0 0)
	while [[ ! -e $stop ]]; do
		for i in 0 1 2; do
			pid=${NODE_PIDS[$i]}
			kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
			((${kib:-0} > peak[i])) && peak[i]=$kib
		done
		sleep 1
	done
	for i in 0 1 2; do echo "$system n$((i + 1)) ${peak[$i]}"; done >>"$OUT/rss.txt"
}

# ---- workloads ----------------------------------------------------------------------------

# run_workload SYSTEM NAME ARGS...: one workload, its JSON result in $OUT/SYSTEM-NAME.json.
run_workload() {
	local system=$1 name=$2
	shift 2
	log "$system: $name"
	# A failed workload is recorded and the run goes on: its cell stays empty in the table.
	if ! "$LOAD" --system "$DRIVER" --label "$system" --addrs "$ADDRS" --duration "$DURATION" --runs "$RUNS" \
		--server-pids "$(IFS=,; echo "${NODE_PIDS[*]}")" --out "$OUT/$system-$name.json" "$@"; then
		log "$system: $name FAILED"
		FAILED+=("$system/$name")
	fi
}

bench_system() {
	local system=$1
	case $system in
	cairn) start_cairn ;;
	nats-always) start_nats always ;;
	nats-default) start_nats default ;;
	etcd) start_etcd ;;
	*) log "unknown system $system"; return 1 ;;
	esac
	log "$system: cluster starting ($ADDRS)"
	if ! wait_ready "$system"; then
		FAILED+=("$system/start")
		stop_nodes
		rm -rf "$WORK/cairn" "$WORK/nats" "$WORK/etcd"
		return 0
	fi
	run_workload "$system" c1 --clients 1 --warmup "$WARMUP"
	run_workload "$system" c16 --clients 16
	local stop=$WORK/rss-stop
	rm -f "$stop"
	rss_sampler "$system" "$stop" &
	SAMPLER_PID=$!
	run_workload "$system" c256 --clients 256
	touch "$stop"
	wait "$SAMPLER_PID"
	SAMPLER_PID=
	run_workload "$system" pipelined --mode pipelined --window 256
	run_workload "$system" read --mode read --events "$READ_EVENTS"
	run_workload "$system" subscribe --mode subscribe --events "$READ_EVENTS"
	stop_nodes
	rm -rf "$WORK/cairn" "$WORK/nats" "$WORK/etcd"
}

: >"$OUT/rss.txt"
for s in $SYSTEMS; do bench_system "$s"; done

{
	echo "Side-by-side run of $(date -u +%Y-%m-%d), \`$( [[ ${QUICK:-0} == 1 ]] && echo 'QUICK=1 ')make bench-peers\`"
	echo "(systems: $SYSTEMS; warm-up $WARMUP per fresh cluster, median of $RUNS run(s) of $DURATION, 256-byte events,"
	echo "reads of $READ_EVENTS events). Machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo),"
	echo "$(uname -sr), $(go version | awk '{print $3}'). Load average before the run: $LOAD_BEFORE."
	echo "Versions: cairn $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')$(need nats && echo ", nats-server $NATS_VERSION")$(need etcd && echo ", etcd $ETCD_VERSION")."
	echo
	if compgen -G "$OUT/*.json" >/dev/null; then
		"$LOAD" table --rss "$OUT/rss.txt" "$OUT"/*.json
	else
		echo "(no results)"
	fi
	echo
	echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
	if ((${#FAILED[@]} > 0)); then echo; echo "**Failed (no result):** ${FAILED[*]} — see the logs in the results directory."; fi
} >"$OUT/table.md"
cat "$OUT/table.md"
log "results in $OUT (table.md is the table for docs/benchmarks.md)"
if ((${#FAILED[@]} > 0)); then
	log "failed: ${FAILED[*]}"
	exit 1
fi
