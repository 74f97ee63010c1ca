package api

import "sync/atomic"

// Stats is a snapshot of the service's counters. Every failure branch of the service is counted
// here (and logged); cairnd exports them as metrics.
type Stats struct {
	// Errors counts the error statuses this node returned, by ErrorInfo reason (Reason*
	// constants); statuses without a Cairn reason (passed through from gRPC itself) count under "".
	Errors map[string]uint64
	// Forwarded counts requests this node forwarded to the leader.
	Forwarded uint64
	// ForwardRetries counts forwards retried on a fresh connection after a transport failure.
	ForwardRetries uint64
	// ForwardFailures counts forwards that failed after the retry (returned as OUTCOME_UNKNOWN,
	// FORWARD_FAILED or SHUTTING_DOWN).
	ForwardFailures uint64
	// ForwardRefused counts forwarded requests that reached this node while it was not the
	// leader, and were answered NOT_LEADER instead of being forwarded a second time.
	ForwardRefused uint64
	// ConnsDropped counts pooled leader connections closed after a transport failure.
	ConnsDropped uint64
}

// counters are the live counters behind Stats.
type counters struct {
	errors                                     map[string]*atomic.Uint64 // fixed key set; read-only map
	forwarded, forwardRetries, forwardFailures atomic.Uint64
	forwardRefused, connsDropped               atomic.Uint64
}

func newCounters() *counters {
	c := &counters{errors: make(map[string]*atomic.Uint64, len(allReasons)+1)}
	for _, r := range append([]string{""}, allReasons...) {
		c.errors[r] = new(atomic.Uint64)
	}
	return c
}

func (c *counters) countError(reason string) {
	ctr, ok := c.errors[reason]
	if !ok {
		ctr = c.errors[""] // a reason from a newer node: count as unclassified
	}
	ctr.Add(1)
}

// Stats returns a snapshot of the counters.
func (s *Service) Stats() Stats {
	c := s.stats
	out := Stats{
		Errors:          make(map[string]uint64, len(c.errors)),
		Forwarded:       c.forwarded.Load(),
		ForwardRetries:  c.forwardRetries.Load(),
		ForwardFailures: c.forwardFailures.Load(),
		ForwardRefused:  c.forwardRefused.Load(),
		ConnsDropped:    c.connsDropped.Load(),
	}
	for r, v := range c.errors {
		if n := v.Load(); n > 0 {
			out.Errors[r] = n
		}
	}
	return out
}
