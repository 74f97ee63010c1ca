package load

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func res(system string, mode Mode, clients int, tput, p50, p99 float64) *Result {
	return &Result{System: system, Mode: mode, Clients: clients, Window: 256, EventBytes: 256,
		Median: RunResult{EventsPerSec: tput, Latency: Latency{P50: p50, P99: p99}}}
}

func TestTable(t *testing.T) {
	results := []*Result{
		res(SystemEtcd, Closed, 1, 1000, 0.9, 2),
		res(SystemCairn, Closed, 1, 2000, 0.5, 1),
		res(SystemNATSAlways, Closed, 1, 1000, 1.0, 2),
		res(SystemCairn, Closed, 16, 12_000, 1, 5),
		res(SystemNATSAlways, Closed, 16, 8_000, 2, 6),
		res(SystemCairn, Read, 1, 900_000, 0, 0),
	}
	var b bytes.Buffer
	rss := []RSS{{System: SystemCairn, Node: "n1", KiB: 300 * 1024}, {System: SystemEtcd, Node: "e1", KiB: 100 * 1024}}
	if err := Table(&b, results, rss); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "| workload | cairn | nats-always | etcd |") {
		t.Errorf("columns not in the order cairn, nats-always, etcd: %s", lines[0])
	}
	for _, want := range []string{
		"| 1 client | 2,000 ev/s, p50 0.50 ms, p99 1.0 ms | 1,000 ev/s, p50 1.00 ms, p99 2.0 ms | 1,000 ev/s, p50 0.90 ms, p99 2.0 ms | 2.00× | 2.00× | ≥ 1,600 ev/s, p50 ≤ 0.6 ms | met |",
		// 12 k is above 10 k but below 2 × 8 k.
		"| 16 clients | 12,000 ev/s, p50 1.00 ms, p99 5.0 ms | 8,000 ev/s, p50 2.00 ms, p99 6.0 ms | — | 1.50× | — | ≥ 2× NATS-always and ≥ 10 k ev/s | **not met** |",
		"| read back in order | 900,000 ev/s | — | — | — | — | ≥ 1 M ev/s | **not met** |",
		"| cairn | n1 | 300.0 MiB | **not met** |",
		"| etcd | e1 | 100.0 MiB | — |",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("table lacks\n%s\ngot:\n%s", want, out)
		}
	}
}

func TestParseRSS(t *testing.T) {
	got, err := ParseRSS(strings.NewReader("# system node kib\ncairn node1 1024\n\netcd e1 2048\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1] != (RSS{System: "etcd", Node: "e1", KiB: 2048}) {
		t.Fatalf("got %+v", got)
	}
	for _, bad := range []string{"cairn node1\n", "cairn node1 lots\n", "cairn n -5\n"} {
		if _, err := ParseRSS(strings.NewReader(bad)); !errors.Is(err, ErrBadInput) {
			t.Errorf("%q: err %v, want ErrBadInput", bad, err)
		}
	}
}

func TestDecodeResultRejectsJunk(t *testing.T) {
	for _, bad := range []string{"", "{}", `{"system":"x","mode":"closed","bogus":1}`, "[1]"} {
		if _, err := DecodeResult(strings.NewReader(bad)); !errors.Is(err, ErrBadInput) {
			t.Errorf("%q: err %v, want ErrBadInput", bad, err)
		}
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 1234567.8: "1,234,568"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}
