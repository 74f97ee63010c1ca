package systemtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/api/cairnpb"
)

// rawCodec sends a *[]byte as the request's wire bytes, unchecked, and receives bytes.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// floodRequests are the hostile requests of the flood, each with the status code it must get.
func floodRequests(t *testing.T, maxRequest int) []struct {
	name string
	body []byte
	code codes.Code
} {
	t.Helper()
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	badUTF8 := protowire.AppendTag(nil, 1, protowire.BytesType)
	badUTF8 = protowire.AppendBytes(badUTF8, []byte{'a', 0xff})
	oversized := marshal(&cairnpb.AppendRequest{Stream: "flood", Events: []*cairnpb.EventData{
		{Type: "A", Data: bytes.Repeat([]byte("x"), maxRequest+1)}}})
	bigEvent := marshal(&cairnpb.AppendRequest{Stream: "flood", Events: []*cairnpb.EventData{
		{Type: "A", Data: bytes.Repeat([]byte("x"), maxRequest/2)}}})
	tooMany := &cairnpb.AppendRequest{Stream: "flood"}
	for range 20 {
		tooMany.Events = append(tooMany.Events, &cairnpb.EventData{Type: "A"})
	}
	return []struct {
		name string
		body []byte
		code codes.Code
	}{
		{"oversized request", oversized, codes.ResourceExhausted},
		{"oversized event", bigEvent, codes.ResourceExhausted},
		{"too many events", marshal(tooMany), codes.ResourceExhausted},
		{"invalid UTF-8", badUTF8, codes.InvalidArgument},
		{"malformed wire data", []byte{0xff, 0xff, 0xff, 0x0f}, codes.InvalidArgument},
		{"bad id", marshal(&cairnpb.AppendRequest{Stream: "flood", Events: []*cairnpb.EventData{{Id: "nope", Type: "A"}}}), codes.InvalidArgument},
		{"reserved stream", marshal(&cairnpb.AppendRequest{Stream: "$x", Events: []*cairnpb.EventData{{Type: "A"}}}), codes.InvalidArgument},
		{"long name", marshal(&cairnpb.AppendRequest{Stream: strings.Repeat("n", 300), Events: []*cairnpb.EventData{{Type: "A"}}}), codes.InvalidArgument},
	}
}

// metricValue reads one unlabelled sample from cairnd's /metrics.
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// TestFloodOfBadRequests (issue 9, acceptance 4): a real cairnd under 1,000 oversized or
// malformed requests per second for 10 seconds answers each with its documented error, stays
// ready (/readyz), serves valid appends during the flood with bounded latency, and its
// goroutines and memory do not grow with the flood.
func TestFloodOfBadRequests(t *testing.T) {
	const (
		rate        = 1000
		duration    = 10 * time.Second
		maxRequest  = 64 << 10
		maxInFlight = 256
	)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := l.Addr().String()
	l.Close()
	c := mustStartCluster(t, 1, "--metrics-bind", metricsAddr, "--log-level", "warn",
		"--max-request-bytes", strconv.Itoa(maxRequest), "--max-event-bytes", strconv.Itoa(maxRequest/4),
		"--max-events-per-append", "10")
	node := c.Nodes[0]
	base := "http://" + metricsAddr
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Warm up, then take the baseline.
	for i := range 20 {
		if _, err := node.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "ok", Events: []*cairnpb.EventData{event(newUUID())}}); err != nil {
			t.Fatalf("warm-up append %d: %v", i, err)
		}
	}
	goroutines0 := metricValue(t, base, "go_goroutines")
	rss0 := metricValue(t, base, "process_resident_memory_bytes")

	// A separate connection for the flood, like a hostile client.
	conn, err := grpc.NewClient(node.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reqs := floodRequests(t, maxRequest)

	var (
		sent, wrong, dropped atomic.Int64
		wrongMu              sync.Mutex
		firstWrong           string
		wg                   sync.WaitGroup
	)
	sem := make(chan struct{}, maxInFlight)
	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		// Every 10ms, issue what the rate asks for since the start, so a late tick on a busy
		// machine does not lower the rate.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		for issued := 0; issued < rate*int(duration/time.Second); {
			<-tick.C
			want := min(int(time.Since(start)*rate/time.Second), rate*int(duration/time.Second))
			for ; issued < want; issued++ {
				r := reqs[issued%len(reqs)]
				select {
				case sem <- struct{}{}:
				default:
					dropped.Add(1) // the node is slow to answer: do not pile up goroutines here
					continue
				}
				wg.Add(1)
				sent.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
					defer rcancel()
					var out []byte
					err := conn.Invoke(rctx, "/cairn.v1.Events/Append", &r.body, &out)
					if got := status.Code(err); got != r.code {
						wrong.Add(1)
						wrongMu.Lock()
						if firstWrong == "" {
							firstWrong = fmt.Sprintf("%s: %v, want %v", r.name, err, r.code)
						}
						wrongMu.Unlock()
					}
				}()
			}
		}
	}()

	// Meanwhile: valid appends and readiness.
	var latencies []time.Duration
	notReady := 0
	for done := false; !done; {
		select {
		case <-floodDone:
			done = true
		default:
		}
		start := time.Now()
		_, err := node.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "ok", Events: []*cairnpb.EventData{event(newUUID())}})
		if err != nil {
			t.Fatalf("valid append during the flood: %v", err)
		}
		latencies = append(latencies, time.Since(start))
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the flood: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			notReady++
		}
		select {
		case <-floodDone:
			done = true
		case <-time.After(50 * time.Millisecond): // pace the valid load at about 20 appends/s
		}
	}
	wg.Wait()
	n := sent.Load()
	t.Logf("flood: %d hostile requests in %v, %d not sent because %d were in flight, %d answered with the wrong code",
		n, duration, dropped.Load(), maxInFlight, wrong.Load())
	if n < int64(rate*duration/time.Second)*9/10 {
		t.Fatalf("only %d hostile requests sent: the node answered too slowly for the rate", n)
	}
	if wrong.Load() > 0 {
		t.Fatalf("%d hostile requests got the wrong answer; first: %s", wrong.Load(), firstWrong)
	}
	if notReady > 0 {
		t.Fatalf("/readyz was not ready %d times during the flood", notReady)
	}
	slices.Sort(latencies)
	p99 := latencies[len(latencies)*99/100]
	t.Logf("valid appends during the flood: %d, p50 %v, p99 %v, max %v", len(latencies),
		latencies[len(latencies)/2], p99, latencies[len(latencies)-1])
	if p99 > 2*time.Second {
		t.Fatalf("valid append p99 %v during the flood, want under 2s", p99)
	}

	// After the flood the node settles back: no goroutine leak, no memory blow-up.
	conn.Close()
	var goroutines float64
	deadline := time.Now().Add(15 * time.Second)
	for {
		goroutines = metricValue(t, base, "go_goroutines")
		if goroutines <= goroutines0+20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // poll until the flood's connection is torn down
	}
	rss := metricValue(t, base, "process_resident_memory_bytes")
	t.Logf("goroutines %v -> %v, RSS %.0f MiB -> %.0f MiB", goroutines0, goroutines, rss0/(1<<20), rss/(1<<20))
	if goroutines > goroutines0+20 {
		t.Fatalf("goroutines %v after the flood, %v before", goroutines, goroutines0)
	}
	if rss > rss0+256<<20 {
		t.Fatalf("RSS grew from %.0f MiB to %.0f MiB", rss0/(1<<20), rss/(1<<20))
	}
}
