package api

import (
	"context"
	"sync"

	"google.golang.org/grpc/peer"
)

// connSubscriptions counts the running subscriptions of each client connection, to enforce
// Config.MaxSubscriptionsPerConn. A connection is identified by its remote and local addresses
// (a TCP connection's 4-tuple), which gRPC puts in the request context. A connection's entry is
// deleted when its last subscription ends, so the map holds only connections with subscriptions.
type connSubscriptions struct {
	mu     sync.Mutex
	byConn map[string]int
}

// connKey identifies the connection ctx's request arrived on; "" when gRPC gave no peer (an
// in-process call), which is then not limited.
func connKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	local := ""
	if p.LocalAddr != nil {
		local = p.LocalAddr.String()
	}
	return p.Addr.String() + "|" + local
}

// acquire admits one more subscription on ctx's connection, or fails with RESOURCE_EXHAUSTED
// (limit "subscriptions_per_connection") when the connection already runs maxPerConn. release
// must be called once when the subscription ends.
func (c *connSubscriptions) acquire(ctx context.Context, maxPerConn int) (release func(), err error) {
	key := connKey(ctx)
	if key == "" {
		return func() {}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.byConn[key]; n >= maxPerConn {
		return nil, limitError("subscriptions_per_connection", maxPerConn, n+1, "")
	}
	if c.byConn == nil {
		c.byConn = make(map[string]int)
	}
	c.byConn[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.byConn[key]--; c.byConn[key] <= 0 {
				delete(c.byConn, key)
			}
		})
	}, nil
}
