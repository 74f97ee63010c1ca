package workload

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/history"
)

// Config sizes a workload.
type Config struct {
	// Name is "streams", "global" or "follower".
	Name string
	// Rate is the target number of client operations per second, all workers together.
	Rate float64
	// Clients is the number of concurrent workers.
	Clients int
	// Seed drives every random choice of the workload.
	Seed uint64
	// HotStreams is how many streams the streams/follower workloads contend on at a time;
	// RotateAfter and RotateInfos retire a stream after that many operations or unknown
	// outcomes (keeping each stream's linearizability check small).
	HotStreams, RotateAfter, RotateInfos int
	// Streams is the number of streams of the global workload; Tailers its $all readers.
	Streams, Tailers int
	// Retries is how often an append of unknown outcome is retried with the same event ids
	// (default 6, negative: never).
	Retries int
	// Affinity binds worker w to node w mod n (otherwise every operation picks a random node):
	// a frozen node then holds only its own workers' requests while the others keep going.
	Affinity bool
}

// Defaults fills zero fields.
func (c Config) Defaults() Config {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	if c.Rate <= 0 {
		c.Rate = 100
	}
	def(&c.Clients, 8)
	def(&c.HotStreams, 4)
	def(&c.RotateAfter, 200)
	def(&c.RotateInfos, 3)
	def(&c.Streams, 100)
	def(&c.Tailers, 2)
	if c.Retries < 0 {
		c.Retries = 0
	} else if c.Retries == 0 {
		c.Retries = 6
	}
	return c
}

// Names lists the workloads.
var Names = []string{"streams", "global", "follower"}

// Run drives the named workload until ctx ends and returns once every worker has stopped.
func Run(ctx context.Context, env *Env, cfg Config) error {
	cfg = cfg.Defaults()
	lim := newLimiter(ctx, cfg.Rate)
	switch cfg.Name {
	case "streams", "follower":
		runStreams(ctx, env, cfg, lim, cfg.Name == "follower")
	case "global":
		runGlobal(ctx, env, cfg, lim)
	default:
		return fmt.Errorf("workload: unknown workload %q (want one of %v)", cfg.Name, Names)
	}
	return nil
}

// limiter hands out Rate tokens per second, with a small burst.
type limiter struct{ tokens chan struct{} }

func newLimiter(ctx context.Context, rate float64) *limiter {
	l := &limiter{tokens: make(chan struct{}, 4)}
	every := time.Duration(float64(time.Second) / rate)
	go func() {
		t := time.NewTicker(max(every, 100*time.Microsecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				select {
				case l.tokens <- struct{}{}:
				default:
				}
			}
		}
	}()
	return l
}

func (l *limiter) wait(ctx context.Context) bool {
	select {
	case <-l.tokens:
		return true
	case <-ctx.Done():
		return false
	}
}

// sleep waits d or until ctx ends (client backoff between retries).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// chooseNode is the node worker w sends its next operation to.
func chooseNode(env *Env, rng *rand.Rand, cfg Config, w int) string {
	nodes := env.Driver.Nodes()
	if cfg.Affinity {
		return nodes[w%len(nodes)]
	}
	return pick(rng, nodes)
}

// appendWithRetries appends and, while the outcome is unknown, retries the same ids (and the
// same expected revision) through random nodes, up to retries times with growing backoff, as a
// well-behaved client does: a retry answered NOT_LEADER or NO_LEADER says only that *that*
// attempt was not applied, so the chain goes on until an attempt is acknowledged or definitely
// refused for its own reasons (a conflict). Every attempt is its own history record.
func appendWithRetries(ctx context.Context, env *Env, c *Client, rng *rand.Rand, node, stream string, expected int64, ids []uint64, retries int) history.Op {
	op := c.Append(ctx, node, stream, expected, ids, 0)
	unknown := op.Type == history.Info
	backoff := 100 * time.Millisecond
	for attempt := 1; unknown && attempt <= retries; attempt++ {
		if !sleep(ctx, backoff+time.Duration(rng.IntN(100))*time.Millisecond) {
			break
		}
		backoff = min(2*backoff, time.Second)
		op = c.Append(ctx, pick(rng, env.Driver.Nodes()), stream, expected, ids, attempt)
		unknown = op.Type == history.Info || op.Error == history.ReasonNotLeader || op.Error == history.ReasonNoLeader
	}
	return op
}

// hotSet is the rotating set of contended streams.
type hotSet struct {
	mu     sync.Mutex
	slots  []hot
	next   int
	after  int
	infos  int
	prefix string
}

type hot struct {
	name       string
	ops, infos int
}

func newHotSet(n, after, infos int, prefix string) *hotSet {
	h := &hotSet{after: after, infos: infos, prefix: prefix}
	for range n {
		h.slots = append(h.slots, hot{name: h.fresh()})
	}
	return h
}

func (h *hotSet) fresh() string {
	h.next++
	return fmt.Sprintf("%s%d", h.prefix, h.next)
}

func (h *hotSet) pick(rng *rand.Rand) (int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := rng.IntN(len(h.slots))
	return k, h.slots[k].name
}

// done counts an operation on slot k's stream and rotates it when it is used up.
func (h *hotSet) done(k int, name string, info bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &h.slots[k]
	if s.name != name {
		return // already rotated
	}
	s.ops++
	if info {
		s.infos++
	}
	if s.ops >= h.after || s.infos >= h.infos {
		*s = hot{name: h.fresh()}
	}
}

// runStreams is the streams workload (and, with follower, the follower-reads workload): workers
// pick a hot stream and do appends with the revision they last saw (35 %), without condition
// (15 %), with a deliberately stale revision that must conflict (10 %), linearizable whole
// reads (30 %) and head reads (10 %). With follower, 30 % of operations become STALE reads on a
// random node, mostly with the worker's last acknowledged log index on that stream as
// min_log_index (read-your-writes).
func runStreams(ctx context.Context, env *Env, cfg Config, lim *limiter, follower bool) {
	hs := newHotSet(cfg.HotStreams, cfg.RotateAfter, cfg.RotateInfos, "s")
	var wg sync.WaitGroup
	for w := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)+1))
			c := env.NewClient(w, cfg.Seed)
			lastLen := map[string]int64{}
			lastIdx := map[string]uint64{}
			for lim.wait(ctx) {
				k, stream := hs.pick(rng)
				node := chooseNode(env, rng, cfg, w)
				x := rng.Float64()
				if follower {
					if x < 0.3 {
						var tok uint64
						if rng.Float64() < 0.7 {
							tok = lastIdx[stream]
						}
						op := c.FollowerRead(ctx, node, stream, tok)
						hs.done(k, stream, false)
						_ = op
						continue
					}
					x = (x - 0.3) / 0.7
				}
				info := false
				switch {
				case x < 0.60:
					var expected int64
					switch {
					case x < 0.35:
						expected = lastLen[stream]
					case x < 0.50:
						expected = history.ExpectAny
					case lastLen[stream] > 0:
						expected = rng.Int64N(lastLen[stream])
					default:
						expected = 1 + rng.Int64N(3)
					}
					ids := c.NextIDs(1 + rng.IntN(3))
					op := appendWithRetries(ctx, env, c, rng, node, stream, expected, ids, cfg.Retries)
					switch {
					case op.Type == history.OK:
						lastLen[stream], lastIdx[stream] = op.Version, op.LogIndex
					case op.Error == history.ReasonWrongExpectedRevision && op.Version >= 0:
						lastLen[stream] = op.Version
					case op.Type == history.Info:
						info = true
					}
				case x < 0.90:
					if op := c.Read(ctx, node, stream); op.Type == history.OK && op.End {
						lastLen[stream] = op.Version
					}
				default:
					if op := c.Head(ctx, node, stream); op.Type == history.OK {
						lastLen[stream] = op.Version
					}
				}
				hs.done(k, stream, info)
			}
		}()
	}
	wg.Wait()
}

// runGlobal is the global workload: writers append without condition to random streams of a
// large set (10 % of their operations are linearizable tail reads of $all); tailers read $all
// page by page from random nodes, alternately LINEARIZABLE and STALE, remembering their position.
func runGlobal(ctx context.Context, env *Env, cfg Config, lim *limiter) {
	var wg sync.WaitGroup
	for w := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)+1))
			c := env.NewClient(w, cfg.Seed)
			for lim.wait(ctx) {
				node := chooseNode(env, rng, cfg, w)
				if rng.Float64() < 0.1 {
					c.Tail(ctx, node)
					continue
				}
				stream := fmt.Sprintf("g%d", rng.IntN(cfg.Streams))
				appendWithRetries(ctx, env, c, rng, node, stream, history.ExpectAny, c.NextIDs(1+rng.IntN(3)), cfg.Retries)
			}
		}()
	}
	for t := range cfg.Tailers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slot := cfg.Clients + t
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(slot)+1))
			c := env.NewClient(slot, cfg.Seed)
			tailLim := newLimiter(ctx, 20)
			cursor := uint64(1)
			for i := 0; tailLim.wait(ctx); i++ {
				op := c.ReadAllPage(ctx, pick(rng, env.Driver.Nodes()), cursor, i%2 == 0, 200)
				if op.Type == history.OK && len(op.Records) > 0 {
					cursor = op.Records[len(op.Records)-1].Position + 1
				}
			}
		}()
	}
	wg.Wait()
}
