package cairndrv

import (
	"context"
	"testing"
	"time"

	"github.com/cairndb/cairn/bench/load"
	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/testcluster"
)

// Every workload of the engine runs against a real in-process 3-node cluster through this
// driver, and what it reports is what the cluster stored.
func TestDriverAgainstCluster(t *testing.T) {
	tc := testcluster.New(t, 3)
	tc.WaitLeader(t)
	d, err := New(load.DriverConfig{Addrs: tc.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	res, err := load.Run(ctx, d, load.Config{Mode: load.Closed, Clients: 4, Duration: 300 * time.Millisecond, Prefix: "t"})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Median
	if m.Events == 0 || m.Errors != 0 || m.Latency.Count != m.Events {
		t.Fatalf("closed loop: %+v", m)
	}
	// The four per-client streams hold exactly the acknowledged appends.
	c, err := client.New(tc.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var stored int64
	for i := range 4 {
		r, err := c.Read(ctx, "t-r0-"+string(rune('0'+i)), client.ReadOptions{Limit: 10_000})
		if err != nil {
			t.Fatal(err)
		}
		stored += int64(len(r.Events))
	}
	if stored != m.Events {
		t.Fatalf("the streams hold %d events, the run reported %d", stored, m.Events)
	}

	for _, cfg := range []load.Config{
		{Mode: load.Pipelined, Window: 8, Duration: 200 * time.Millisecond},
		{Mode: load.Read, Events: 2500},
		{Mode: load.Subscribe, Events: 2500},
	} {
		res, err := load.Run(ctx, d, cfg)
		if err != nil {
			t.Fatalf("%s: %v", cfg.Mode, err)
		}
		if res.Median.Events == 0 || res.Median.Errors != 0 {
			t.Fatalf("%s: %+v", cfg.Mode, res.Median)
		}
		if (cfg.Mode == load.Read || cfg.Mode == load.Subscribe) && res.Median.Events != 2500 {
			t.Fatalf("%s delivered %d events, want 2500", cfg.Mode, res.Median.Events)
		}
	}
}
