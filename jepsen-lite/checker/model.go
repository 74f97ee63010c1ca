package checker

import (
	"fmt"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/cairndb/cairn/jepsen-lite/history"
)

// The per-stream linearizability model. A stream's state is constant-size: its length and a
// chained hash of its event ids (plus the last id, for head reads), so porcupine's cache of
// visited (linearized set, state) pairs stays small however long the stream is.

// OpKind is the kind of a model operation.
type OpKind uint8

// Model operation kinds.
const (
	// OpAppend appends IDs if Expected holds.
	OpAppend OpKind = iota
	// OpRead reads the whole stream (length and hash).
	OpRead
	// OpHead reads the stream's length and last id.
	OpHead
)

// Outcome is a model append's result.
type Outcome uint8

// Append outcomes.
const (
	// Ok: applied; Output.Version is the stream length after it.
	Ok Outcome = iota
	// Conflict: definitely not applied because Expected did not hold; Output.Version is the
	// length the server reported (-1 when it reported none).
	Conflict
	// Indefinite: maybe applied. Its Return is +inf, so "never applied" equals "applied last".
	Indefinite
)

// Input is a model operation's input.
type Input struct {
	Kind     OpKind
	Expected int64 // appends: required length, or history.ExpectAny
	IDs      []uint64
	Op       int // history index of the invoke, for reports
}

// Output is a model operation's output.
type Output struct {
	Outcome Outcome
	Version int64  // appends: see Outcome; reads: the length read
	Hash    uint64 // OpRead: Fold(0, ids read)
	LastID  uint64 // OpHead: id at Version-1, 0 when empty
}

// State is one stream.
type State struct {
	Version int64
	Hash    uint64
	LastID  uint64
}

// mix64 is splitmix64's finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Fold chains ids into h: Fold(Fold(0, a), b) == Fold(0, a++b).
func Fold(h uint64, ids []uint64) uint64 {
	for _, id := range ids {
		h = mix64(h ^ mix64(id+0x9e3779b97f4a7c15))
	}
	return h
}

// Step is the sequential specification of one stream.
func Step(s State, in Input, out Output) (bool, State) {
	switch in.Kind {
	case OpAppend:
		match := in.Expected == history.ExpectAny || in.Expected == s.Version
		n := int64(len(in.IDs))
		if n == 0 {
			return false, s
		}
		next := State{Version: s.Version + n, Hash: Fold(s.Hash, in.IDs), LastID: in.IDs[n-1]}
		switch out.Outcome {
		case Ok:
			return match && out.Version == next.Version, next
		case Conflict:
			return !match && (out.Version < 0 || out.Version == s.Version), s
		case Indefinite:
			if match {
				return true, next
			}
			return true, s
		}
	case OpRead:
		return out.Version == s.Version && out.Hash == s.Hash, s
	case OpHead:
		return out.Version == s.Version && out.LastID == s.LastID, s
	}
	return false, s
}

// StreamModel is the porcupine model of one stream (histories are partitioned by stream before
// checking). Indefinite appends are nondeterministic in the sense that they may or may not apply;
// with their Return at +inf, "not applied" is the same as "applied after everything", so the
// deterministic step above is complete.
var StreamModel = porcupine.Model{
	Init: func() any { return State{} },
	Step: func(s, in, out any) (bool, any) {
		return Step(s.(State), in.(Input), out.(Output))
	},
	Equal: func(a, b any) bool { return a.(State) == b.(State) },
	Hash: func(s any) uint64 {
		st := s.(State)
		return st.Hash ^ uint64(st.Version)*0x9e3779b97f4a7c15
	},
	DescribeOperation: func(in, out any) string { return describeOp(in.(Input), out.(Output)) },
	DescribeState: func(s any) string {
		st := s.(State)
		return fmt.Sprintf("len %d #%04x last %s", st.Version, st.Hash&0xffff, history.IDString(st.LastID))
	},
}

func describeOp(in Input, out Output) string {
	switch in.Kind {
	case OpAppend:
		ids := make([]string, len(in.IDs))
		for i, id := range in.IDs {
			ids[i] = history.IDString(id)
		}
		exp := "any"
		if in.Expected != history.ExpectAny {
			exp = fmt.Sprint(in.Expected)
		}
		res := ""
		switch out.Outcome {
		case Ok:
			res = fmt.Sprintf("ok len %d", out.Version)
		case Conflict:
			res = fmt.Sprintf("conflict (len %d)", out.Version)
		case Indefinite:
			res = "unknown"
		}
		return fmt.Sprintf("append(exp %s, [%s]) -> %s  [op %d]", exp, strings.Join(ids, " "), res, in.Op)
	case OpRead:
		return fmt.Sprintf("read -> len %d #%04x  [op %d]", out.Version, out.Hash&0xffff, in.Op)
	case OpHead:
		return fmt.Sprintf("head -> len %d last %s  [op %d]", out.Version, history.IDString(out.LastID), in.Op)
	}
	return "?"
}
