package api

import (
	"fmt"
	"google.golang.org/protobuf/types/known/timestamppb"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/cluster"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// Validation happens here, at the edge, before anything reaches Propose (DESIGN §6: bad input
// never corrupts state, never kills a node). Limits are checked first, because they bound the
// work the structural checks do; structural problems are then collected, all of them (up to
// maxViolations), into one INVALID_ARGUMENT with a BadRequest detail.

// Field violation reasons (errdetails.BadRequest.FieldViolation.Reason).
const (
	violationRequired         = "REQUIRED"
	violationTooLong          = "TOO_LONG"
	violationInvalidUTF8      = "INVALID_UTF8"
	violationControlCharacter = "CONTROL_CHARACTER"
	violationReservedPrefix   = "RESERVED_PREFIX"
	violationInvalidUUID      = "INVALID_UUID"
	violationNilUUID          = "NIL_UUID"
	violationDuplicate        = "DUPLICATE"
	violationInvalidEnum      = "INVALID_ENUM"
	violationUnexpectedValue  = "UNEXPECTED_VALUE"
	violationInvalidDuration  = "INVALID_DURATION"
)

// checkRequestSize enforces MaxRequestBytes on any request.
func (s *Service) checkRequestSize(req proto.Message) error {
	if n := proto.Size(req); n > s.cfg.MaxRequestBytes {
		return limitError("request_bytes", s.cfg.MaxRequestBytes, n, "")
	}
	return nil
}

// eventBytes is the size of an event as MaxEventBytes counts it.
func eventBytes(e *cairnpb.EventData) int {
	n := len(e.GetData()) + len(e.GetMetadata()) + len(e.GetType()) + len(e.GetContentType())
	for _, t := range e.GetTags() {
		n += len(t)
	}
	return n
}

// checkEventLimits enforces MaxEventsPerAppend over all parts and MaxEventBytes per event.
// parts[i] are the events of part i; prefix(i) is its field path prefix.
func (s *Service) checkEventLimits(parts [][]*cairnpb.EventData, prefix func(i int) string) error {
	total := 0
	for _, evs := range parts {
		total += len(evs)
	}
	if total > s.cfg.MaxEventsPerAppend {
		return limitError("events_per_append", s.cfg.MaxEventsPerAppend, total, "")
	}
	for i, evs := range parts {
		for j, e := range evs {
			if n := eventBytes(e); n > s.cfg.MaxEventBytes {
				return limitError("event_bytes", s.cfg.MaxEventBytes, n, fmt.Sprintf("%sevents[%d]", prefix(i), j))
			}
		}
	}
	return nil
}

// checkName validates a stream name. Names starting with '$' are reserved for the system: they
// are refused for writes and allowed for reads (system streams will be readable).
func (s *Service) checkName(b *badRequest, field, name string, write bool) {
	switch {
	case name == "":
		b.add(field, violationRequired, "stream name is required")
	case len(name) > s.cfg.MaxStreamNameBytes:
		b.add(field, violationTooLong, "stream name has %d bytes, max %d", len(name), s.cfg.MaxStreamNameBytes)
	case !utf8.ValidString(name):
		b.add(field, violationInvalidUTF8, "stream name is not valid UTF-8")
	case hasControl(name):
		b.add(field, violationControlCharacter, "stream name contains a control character")
	case write && strings.HasPrefix(name, "$"):
		b.add(field, violationReservedPrefix, "stream names starting with '$' are reserved for the system")
	}
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

// checkExpected validates and converts an expected-revision condition. KIND_UNSPECIFIED is ANY.
// A non-zero revision with any kind but EXACT is refused: it almost always means a client set
// the revision and forgot the kind, which would otherwise silently mean ANY.
func checkExpected(b *badRequest, field string, e *cairnpb.ExpectedRevision) *fsmpb.ExpectedRevision {
	out := &fsmpb.ExpectedRevision{Revision: e.GetRevision()}
	switch e.GetKind() {
	case cairnpb.ExpectedRevision_KIND_UNSPECIFIED, cairnpb.ExpectedRevision_KIND_ANY:
		out.Kind = fsmpb.ExpectedRevision_KIND_ANY
	case cairnpb.ExpectedRevision_KIND_NO_STREAM:
		out.Kind = fsmpb.ExpectedRevision_KIND_NO_STREAM
	case cairnpb.ExpectedRevision_KIND_STREAM_EXISTS:
		out.Kind = fsmpb.ExpectedRevision_KIND_STREAM_EXISTS
	case cairnpb.ExpectedRevision_KIND_EXACT:
		out.Kind = fsmpb.ExpectedRevision_KIND_EXACT
		return out
	default:
		b.add(field+".kind", violationInvalidEnum, "unknown expected revision kind %d", int32(e.GetKind()))
		return out
	}
	if e.GetRevision() != 0 {
		b.add(field+".revision", violationUnexpectedValue,
			"revision %d is only meaningful with KIND_EXACT (kind is %v)", e.GetRevision(), e.GetKind())
	}
	return out
}

// eventField names the field of event j of a part (prefix "" or "appends[i].") for error
// messages. It is formatted only when a violation is reported: the append hot path validates
// every event and reports almost never.
type eventField struct {
	prefix string
	j      int
}

func (f eventField) String() string { return fmt.Sprintf("%sevents[%d]", f.prefix, f.j) }

// checkEvents validates and converts the events of one part. seen maps ids already used in the
// request to the event of their first use: an id may appear once per request. A nil seen is
// created when the part has more than one event (a single-event append cannot repeat an id).
// The converted events and their ids share one allocation each.
func checkEvents(b *badRequest, prefix string, events []*cairnpb.EventData, seen map[[16]byte]eventField) []*fsmpb.Event {
	out := make([]*fsmpb.Event, len(events))
	converted := make([]fsmpb.Event, len(events))
	ids := make([]byte, 16*len(events))
	if seen == nil && len(events) > 1 {
		seen = make(map[[16]byte]eventField, len(events))
	}
	for j, e := range events {
		field := eventField{prefix, j}
		var id [16]byte
		if e.GetId() == "" {
			id = newUUID()
		} else {
			var err error
			if id, err = parseUUID(e.GetId()); err != nil {
				reason := violationInvalidUUID
				if err == errUUIDNil {
					reason = violationNilUUID
				}
				b.add(field.String()+".id", reason, "%q: %v", e.GetId(), err)
			} else if first, dup := seen[id]; dup {
				b.add(field.String()+".id", violationDuplicate, "id %s is also used by %s.id", e.GetId(), first)
			} else if seen != nil {
				seen[id] = field
			}
		}
		switch t := e.GetType(); {
		case t == "":
			b.add(field.String()+".type", violationRequired, "event type is required")
		case !utf8.ValidString(t):
			b.add(field.String()+".type", violationInvalidUTF8, "event type is not valid UTF-8")
		case hasControl(t):
			b.add(field.String()+".type", violationControlCharacter, "event type contains a control character")
		case strings.HasPrefix(t, "$"):
			b.add(field.String()+".type", violationReservedPrefix, "event types starting with '$' are reserved for the system")
		}
		if !utf8.ValidString(e.GetContentType()) {
			b.add(field.String()+".content_type", violationInvalidUTF8, "content type is not valid UTF-8")
		}
		for k, tag := range e.GetTags() {
			switch {
			case tag == "":
				b.add(fmt.Sprintf("%s.tags[%d]", field, k), violationRequired, "tags must not be empty")
			case !utf8.ValidString(tag):
				b.add(fmt.Sprintf("%s.tags[%d]", field, k), violationInvalidUTF8, "tag is not valid UTF-8")
			}
		}
		idb := ids[16*j : 16*(j+1) : 16*(j+1)]
		copy(idb, id[:])
		ev := &converted[j]
		ev.Id, ev.Type, ev.ContentType = idb, e.GetType(), e.GetContentType()
		ev.Data, ev.Metadata, ev.Tags = e.GetData(), e.GetMetadata(), e.GetTags()
		out[j] = ev
	}
	return out
}

// validateAppend checks an Append and builds its command request. Events without an id get a
// random v4 UUID here, before proposing, so every node stores the same id.
func (s *Service) validateAppend(req *cairnpb.AppendRequest) (*fsmpb.Request, error) {
	if err := s.checkRequestSize(req); err != nil {
		return nil, err
	}
	if err := s.checkEventLimits([][]*cairnpb.EventData{req.GetEvents()}, func(int) string { return "" }); err != nil {
		return nil, err
	}
	var b badRequest
	s.checkName(&b, "stream", req.GetStream(), true)
	exp := checkExpected(&b, "expected", req.GetExpected())
	if len(req.GetEvents()) == 0 {
		b.add("events", violationRequired, "an append needs at least one event")
	}
	events := checkEvents(&b, "", req.GetEvents(), nil)
	if err := b.err(); err != nil {
		return nil, err
	}
	return &fsmpb.Request{Kind: &fsmpb.Request_Append{Append: &fsmpb.AppendRequest{Parts: []*fsmpb.StreamAppend{{
		Stream: req.GetStream(), Expected: exp, Events: events,
	}}}}}, nil
}

// validateTombstone checks a Tombstone and builds its command request.
func (s *Service) validateTombstone(req *cairnpb.TombstoneRequest) (*fsmpb.Request, error) {
	var b badRequest
	s.checkName(&b, "stream", req.GetStream(), true)
	exp := checkExpected(&b, "expected", req.GetExpected())
	if err := b.err(); err != nil {
		return nil, err
	}
	return &fsmpb.Request{Kind: &fsmpb.Request_Tombstone{Tombstone: &fsmpb.TombstoneRequest{
		Stream: req.GetStream(), Expected: exp,
	}}}, nil
}

// validateAppendMulti checks an AppendMulti: at least one part, distinct streams, at least one
// event in total (parts without events are check-only conditions), and builds its request.
func (s *Service) validateAppendMulti(req *cairnpb.AppendMultiRequest) (*fsmpb.Request, error) {
	if err := s.checkRequestSize(req); err != nil {
		return nil, err
	}
	parts := req.GetAppends()
	evs := make([][]*cairnpb.EventData, len(parts))
	for i, p := range parts {
		evs[i] = p.GetEvents()
	}
	prefix := func(i int) string { return fmt.Sprintf("appends[%d].", i) }
	if err := s.checkEventLimits(evs, prefix); err != nil {
		return nil, err
	}
	var b badRequest
	if len(parts) == 0 {
		b.add("appends", violationRequired, "an AppendMulti needs at least one part")
	}
	streams := make(map[string]int, len(parts))
	seen := make(map[[16]byte]eventField)
	out := make([]*fsmpb.StreamAppend, len(parts))
	total := 0
	for i, p := range parts {
		s.checkName(&b, prefix(i)+"stream", p.GetStream(), true)
		if first, dup := streams[p.GetStream()]; dup && p.GetStream() != "" {
			b.add(prefix(i)+"stream", violationDuplicate, "stream %q is also the stream of appends[%d]", p.GetStream(), first)
		} else {
			streams[p.GetStream()] = i
		}
		out[i] = &fsmpb.StreamAppend{
			Stream:   p.GetStream(),
			Expected: checkExpected(&b, prefix(i)+"expected", p.GetExpected()),
			Events:   checkEvents(&b, prefix(i), p.GetEvents(), seen),
		}
		total += len(p.GetEvents())
	}
	if len(parts) > 0 && total == 0 {
		b.add("appends", violationRequired, "an AppendMulti needs at least one event in some part")
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return &fsmpb.Request{Kind: &fsmpb.Request_Append{Append: &fsmpb.AppendRequest{Parts: out}}}, nil
}

// readParams is a validated Read or ReadAll.
type readParams struct {
	stream  string
	from    uint64
	fromEnd bool
	dir     fsm.Direction
	limit   int
	opts    cluster.ReadOptions
	filter  filter
	asOf    asOf
	// fromTime starts at the first record (ReadAll) or event (Read) committed at or after it; 0
	// means unset.
	fromTime int64
}

// asOf bounds a read to the log as it was at a position and/or a commit time ("time travel").
type asOf struct {
	position uint64 // 0: no bound
	time     int64  // Unix nanoseconds; 0: no bound
}

// beyond reports whether r is after the as-of point.
func (a asOf) beyond(r *fsm.RecordedEvent) bool {
	return (a.position > 0 && r.Position > a.position) || (a.time > 0 && r.Timestamp > a.time)
}

func (a asOf) bounded() bool { return a.position > 0 || a.time > 0 }

func checkTimestamp(b *badRequest, field string, ts *timestamppb.Timestamp) int64 {
	if ts == nil {
		return 0
	}
	if err := ts.CheckValid(); err != nil {
		b.add(field, violationInvalidDuration, "not a valid timestamp: %v", err)
		return 0
	}
	return max(ts.AsTime().UnixNano(), 1)
}

// checkDirection converts a direction; UNSPECIFIED is FORWARD.
func checkDirection(b *badRequest, d cairnpb.Direction) fsm.Direction {
	switch d {
	case cairnpb.Direction_DIRECTION_UNSPECIFIED, cairnpb.Direction_DIRECTION_FORWARD:
		return fsm.Forward
	case cairnpb.Direction_DIRECTION_BACKWARD:
		return fsm.Backward
	}
	b.add("direction", violationInvalidEnum, "unknown direction %d", int32(d))
	return fsm.Forward
}

// checkReadOptions converts read options; UNSPECIFIED is LINEARIZABLE. min_log_index and
// max_staleness only apply to STALE reads and are ignored otherwise (a linearizable or leader
// read is at least as fresh as any index the client has seen).
func checkReadOptions(b *badRequest, o *cairnpb.ReadOptions) cluster.ReadOptions {
	var out cluster.ReadOptions
	switch o.GetConsistency() {
	case cairnpb.Consistency_CONSISTENCY_UNSPECIFIED, cairnpb.Consistency_CONSISTENCY_LINEARIZABLE:
		out.Consistency = cluster.Linearizable
	case cairnpb.Consistency_CONSISTENCY_LEADER:
		out.Consistency = cluster.Leader
	case cairnpb.Consistency_CONSISTENCY_STALE:
		out.Consistency = cluster.Stale
	default:
		b.add("options.consistency", violationInvalidEnum, "unknown consistency %d", int32(o.GetConsistency()))
	}
	if ms := o.GetMaxStaleness(); ms != nil {
		if err := ms.CheckValid(); err != nil {
			b.add("options.max_staleness", violationInvalidDuration, "%v", err)
		} else if d := ms.AsDuration(); d < 0 {
			b.add("options.max_staleness", violationInvalidDuration, "max_staleness %v is negative", d)
		} else if out.Consistency == cluster.Stale {
			out.MaxStaleness = d
		}
	}
	if out.Consistency == cluster.Stale {
		out.MinLogIndex = o.GetMinLogIndex()
	}
	return out
}

// readLimit applies the default and the cap: 0 means DefaultReadLimit, more than MaxReadLimit
// is clamped to MaxReadLimit.
func (s *Service) readLimit(l uint32) int {
	switch {
	case l == 0:
		return s.cfg.DefaultReadLimit
	case uint64(l) > uint64(s.cfg.MaxReadLimit):
		return s.cfg.MaxReadLimit
	}
	return int(l)
}

func (s *Service) validateRead(req *cairnpb.ReadRequest) (readParams, error) {
	if err := s.checkRequestSize(req); err != nil {
		return readParams{}, err
	}
	var b badRequest
	s.checkName(&b, "stream", req.GetStream(), false)
	p := readParams{
		stream:  req.GetStream(),
		from:    req.GetFromRevision(),
		fromEnd: req.GetFromEnd(),
		dir:     checkDirection(&b, req.GetDirection()),
		limit:   s.readLimit(req.GetLimit()),
		opts:    checkReadOptions(&b, req.GetOptions()),
	}
	p.asOf = asOf{position: req.GetStopAtPosition(), time: checkTimestamp(&b, "stop_at_time", req.GetStopAtTime())}
	p.fromTime = checkTimestamp(&b, "from_time", req.GetFromTime())
	if p.fromTime > 0 && (p.fromEnd || p.dir == fsm.Backward) {
		b.add("from_time", violationUnexpectedValue, "from_time starts a forward read; it cannot be combined with from_end or a backward read")
	}
	return p, b.err()
}

// checkFilterSize refuses a filter with more than MaxFilterEntries entries in any field, before
// any work is done (RESOURCE_EXHAUSTED, limit "filter_entries"). ReadAll and Subscribe share it.
func (s *Service) checkFilterSize(f *cairnpb.Filter) error {
	for _, field := range []struct {
		name    string
		entries []string
	}{
		{"filter.stream_prefixes", f.GetStreamPrefixes()},
		{"filter.event_types", f.GetEventTypes()},
		{"filter.event_type_prefixes", f.GetEventTypePrefixes()},
		{"filter.tags", f.GetTags()},
	} {
		if len(field.entries) > s.cfg.MaxFilterEntries {
			return limitError("filter_entries", s.cfg.MaxFilterEntries, len(field.entries), field.name)
		}
	}
	return nil
}

func (s *Service) validateReadAll(req *cairnpb.ReadAllRequest) (readParams, error) {
	if err := s.checkRequestSize(req); err != nil {
		return readParams{}, err
	}
	if err := s.checkFilterSize(req.GetFilter()); err != nil {
		return readParams{}, err
	}
	var b badRequest
	p := readParams{
		from:    req.GetFromPosition(),
		fromEnd: req.GetFromEnd(),
		dir:     checkDirection(&b, req.GetDirection()),
		limit:   s.readLimit(req.GetLimit()),
		opts:    checkReadOptions(&b, req.GetOptions()),
		filter:  newFilter(&b, req.GetFilter()),
	}
	p.asOf = asOf{position: req.GetStopAtPosition(), time: checkTimestamp(&b, "stop_at_time", req.GetStopAtTime())}
	p.fromTime = checkTimestamp(&b, "from_time", req.GetFromTime())
	if p.fromTime > 0 && (p.fromEnd || p.dir == fsm.Backward) {
		b.add("from_time", violationUnexpectedValue, "from_time starts a forward read; it cannot be combined with from_end or a backward read")
	}
	return p, b.err()
}
