package api

import (
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/fsm"
)

// The tail cache is an optimisation for many live $all subscribers on one node: the records
// they all need next are read from the store and converted once, instead of once per
// subscriber and wake-up. It changes nothing in what is delivered. Records are immutable and
// their positions the same on every node and across snapshot restores, so a cached record is
// never stale — except that a compaction turns earlier events into redacted records: the cache
// remembers the compaction count it was filled under and starts over when it changes. The cache
// only holds consecutive positions, and a subscriber whose next position
// is not in it (it is catching up, or fell behind the cache) reads the store as before.

// Tail cache bounds: the most recent records kept, by count and by approximate bytes.
const (
	tailCacheRecords = 8192
	tailCacheBytes   = 16 << 20
	// tailFillPage is how many records one fill reads from the store at most.
	tailFillPage = 256
)

// cachedRecord is a record with its wire form, shared read-only by every subscriber.
type cachedRecord struct {
	rec  fsm.RecordedEvent
	pb   *cairnpb.RecordedEvent
	size int // proto.Size(pb)
}

// tailCache holds records first, first+1, ... of $all. Its zero value is empty and ready.
type tailCache struct {
	fill sync.Mutex // serialises store reads into the cache

	mu    sync.RWMutex
	first uint64 // position of recs[0]
	recs  []cachedRecord
	bytes int
	epoch uint64 // store.Compactions() when recs were read

	fills, resets atomic.Uint64 // store reads into the cache; restarts at another position
}

func (c *tailCache) epochOf() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.epoch
}

// bounds returns the first cached position and the one after the last.
func (c *tailCache) bounds() (first, next uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.first, c.first + uint64(len(c.recs))
}

// get returns up to n cached records from position from, none at or beyond upTo+1, or ok false
// when from is not cached.
func (c *tailCache) get(from, upTo uint64, n int) ([]cachedRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	next := c.first + uint64(len(c.recs))
	if len(c.recs) == 0 || from < c.first || from >= next {
		return nil, false
	}
	end := min(next, upTo+1, from+uint64(n))
	if end <= from {
		return nil, true
	}
	return c.recs[from-c.first : end-c.first : end-c.first], true
}

// read returns up to n records from position from (at most upTo, the watermark the caller read
// under) for a live subscriber: from the cache, filling it from the store when from is the next
// position after it (or restarting it at from when it is elsewhere). ok is false when from is
// behind the cache or could not be cached: the caller then reads the store itself.
func (c *tailCache) read(store Store, from, upTo uint64, n int) ([]cachedRecord, bool, error) {
	if ep := store.Compactions(); ep != c.epochOf() {
		c.mu.Lock()
		if ep != c.epoch { // drop, never clear: readers may still hold slices of the old array
			c.first, c.recs, c.bytes, c.epoch = 0, nil, 0, ep
		}
		c.mu.Unlock()
	}
	if recs, ok := c.get(from, upTo, n); ok {
		return recs, true, nil
	}
	if first, next := c.bounds(); next > first && from < first {
		return nil, false, nil
	}
	c.fill.Lock()
	defer c.fill.Unlock()
	if recs, ok := c.get(from, upTo, n); ok { // filled while we waited
		return recs, true, nil
	}
	first, next := c.bounds()
	if next > first && from < first {
		return nil, false, nil
	}
	start := next
	if from != next {
		start = from // the cache is elsewhere (no live subscriber used it lately): restart here
	}
	page, err := store.ReadAll(start, fsm.Forward, int(min(uint64(tailFillPage), upTo-start+1)))
	if err != nil {
		return nil, false, fmt.Errorf("fill the tail cache from %d: %w", start, err)
	}
	add := make([]cachedRecord, 0, len(page))
	for i := range page {
		r := page[i]
		if r.Position != start+uint64(i) || r.Position > upTo {
			break
		}
		pb := recordToPB(&r)
		add = append(add, cachedRecord{rec: r, pb: pb, size: proto.Size(pb)})
	}
	c.mu.Lock()
	if start != c.first+uint64(len(c.recs)) {
		// Drop, never clear: readers may still hold slices of the old array.
		if len(c.recs) > 0 {
			c.resets.Add(1)
		}
		c.first, c.recs, c.bytes = start, nil, 0
	}
	c.recs = append(c.recs, add...)
	for _, a := range add {
		c.bytes += a.size
	}
	if len(c.recs) > 2*tailCacheRecords || c.bytes > 2*tailCacheBytes {
		// Trim to the bounds, copying what is kept to a fresh array so the dropped records can
		// be collected (slices handed out earlier keep the old array and stay valid). Trimming
		// only at twice the bounds keeps the copying amortised O(1) per record.
		drop := 0
		for len(c.recs)-drop > tailCacheRecords || (c.bytes > tailCacheBytes && len(c.recs)-drop > 1) {
			c.bytes -= c.recs[drop].size
			drop++
		}
		c.recs = append([]cachedRecord(nil), c.recs[drop:]...)
		c.first += uint64(drop)
	}
	c.mu.Unlock()
	c.fills.Add(1)
	recs, ok := c.get(from, upTo, n)
	return recs, ok, nil
}
