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
// Memory: one map entry (16-byte key, 8-byte value) and one 32-byte queue slot per remembered
// event, about 60 bytes each; the default horizon of 2^20 events costs about 60 MiB.
type dedupeIndex struct {
	maxEvents int
	maxAge    int64 // nanoseconds; <0 means unbounded

	byID  map[[16]byte]uint64 // event id -> global position
	queue []dedupeEntry       // remembered events in position order, from head
	head  int
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

// add remembers one event. Positions arrive in increasing order.
func (d *dedupeIndex) add(id [16]byte, pos uint64, ts int64) {
	d.byID[id] = pos
	d.queue = append(d.queue, dedupeEntry{id: id, pos: pos, ts: ts})
}

// get returns the position of the event with this id, if it is inside the horizon.
func (d *dedupeIndex) get(id [16]byte) (uint64, bool) {
	pos, ok := d.byID[id]
	return pos, ok
}

// evict drops events outside the horizon, given the newest record's timestamp.
func (d *dedupeIndex) evict(newestTs int64) {
	for d.head < len(d.queue) {
		e := d.queue[d.head]
		overCount := len(d.queue)-d.head > d.maxEvents
		tooOld := d.maxAge >= 0 && e.ts < newestTs-d.maxAge
		if !overCount && !tooOld {
			break
		}
		// Live apply never stores an id twice inside the window, but a node restarted with a
		// larger horizon than it ran with may rebuild a window holding an id twice: the later
		// event owns the map entry, so only drop the entry if it still points here.
		if d.byID[e.id] == e.pos {
			delete(d.byID, e.id)
		}
		d.queue[d.head] = dedupeEntry{}
		d.head++
	}
	// Compact once the dead prefix dominates, so the queue's memory stays proportional to the
	// window and the copy cost is amortised O(1) per event.
	if d.head > 1024 && d.head > len(d.queue)/2 {
		n := copy(d.queue, d.queue[d.head:])
		clear(d.queue[n:])
		d.queue = d.queue[:n]
		d.head = 0
	}
}

// len reports how many event ids are remembered.
func (d *dedupeIndex) len() int { return len(d.byID) }
