package fsm

// dedupeIndex remembers the ids of the most recent events, within the DedupeHorizon, so a retried
// append is recognised and answered with its original result (DESIGN §2).
//
// It is derived state: after any prefix of the log it holds exactly the suffix of events that
// satisfies both bounds, measured against the newest record's timestamp. Eviction only ever drops
// from the front and both bounds only tighten as the log grows, so evicting after every record
// (boot, restore) or after every command (live apply) ends in the same window. That is why it needs
// no storage of its own: it survives restart, failover and snapshot install by being rebuilt from
// the records.
//
// Memory: a ring of 32-byte entries that grows to at most MaxEvents (never more, whatever the
// churn), and a map from id to position. Go maps do not shrink after deletes, so the map is
// rebuilt once as many entries have been deleted as it holds, which bounds it to about twice the
// live entries in the worst case and amortises the copy to O(1) per event. See DESIGN.md for
// measured numbers.
type dedupeIndex struct {
	maxEvents int
	maxAge    int64 // nanoseconds; <0 means unbounded

	byID    map[[16]byte]uint64 // event id -> global position
	deleted int                 // deletes since byID was last rebuilt

	ring    []dedupeEntry // remembered events in position order: ring[head], ring[head+1], ... (mod len)
	head    int
	n       int
	resizes int // ring reallocations, for tests of the growth policy
}

type dedupeEntry struct {
	id  [16]byte
	pos uint64
	ts  int64
}

func newDedupeIndex(h DedupeHorizon) *dedupeIndex {
	maxAge := int64(h.MaxAge)
	if h.MaxAge < 0 {
		maxAge = -1
	}
	return &dedupeIndex{maxEvents: h.MaxEvents, maxAge: maxAge, byID: make(map[[16]byte]uint64)}
}

// add remembers one event. Positions arrive in increasing order. The caller evicts afterwards,
// so the ring may briefly hold maxEvents+1 entries.
func (d *dedupeIndex) add(id [16]byte, pos uint64, ts int64) {
	if d.n == len(d.ring) {
		d.grow()
	}
	d.ring[(d.head+d.n)%len(d.ring)] = dedupeEntry{id: id, pos: pos, ts: ts}
	d.n++
	d.byID[id] = pos
}

// grow doubles the ring, unrolling it to start at index 0. It stops at maxEvents+1 slots, which
// is all the window needs between commands; only a single command with many events can fill that
// (eviction runs after each command), and then the ring keeps doubling, so such a command costs
// amortised O(1) per event rather than a copy per event.
func (d *dedupeIndex) grow() {
	size := max(2*len(d.ring), 1024)
	if len(d.ring) < d.maxEvents+1 {
		size = min(size, d.maxEvents+1)
	}
	ring := make([]dedupeEntry, size)
	for i := 0; i < d.n; i++ {
		ring[i] = d.ring[(d.head+i)%len(d.ring)]
	}
	d.ring, d.head = ring, 0
	d.resizes++
}

// get returns the position of the event with this id, if it is inside the horizon.
func (d *dedupeIndex) get(id [16]byte) (uint64, bool) {
	pos, ok := d.byID[id]
	return pos, ok
}

// evict drops events outside the horizon, given the newest record's timestamp.
func (d *dedupeIndex) evict(newestTs int64) {
	for d.n > 0 {
		e := &d.ring[d.head]
		overCount := d.n > d.maxEvents
		tooOld := d.maxAge >= 0 && e.ts < newestTs-d.maxAge
		if !overCount && !tooOld {
			break
		}
		// Live apply never stores an id twice inside the window, but a node restarted with a
		// larger horizon than it ran with may rebuild a window holding an id twice: the later
		// event owns the map entry, so only drop the entry if it still points here.
		if d.byID[e.id] == e.pos {
			delete(d.byID, e.id)
			d.deleted++
		}
		*e = dedupeEntry{}
		d.head = (d.head + 1) % len(d.ring)
		d.n--
	}
	if d.deleted > 4096 && d.deleted > len(d.byID) {
		m := make(map[[16]byte]uint64, len(d.byID))
		for k, v := range d.byID {
			m[k] = v
		}
		d.byID, d.deleted = m, 0
	}
}

// len reports how many event ids are remembered.
func (d *dedupeIndex) len() int { return len(d.byID) }
