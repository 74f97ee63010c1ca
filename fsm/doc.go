// Package fsm is Cairn's replicated state machine: it turns committed raft log entries into events
// in local segment files and keeps the in-memory indexes that reads need.
//
// The FSM implements raft.BatchingFSM. Every decision it takes (expected-revision checks,
// idempotency by event id, revision and position assignment, timestamp clamping) depends only on
// the log and on state derived from records already written, never on the local clock, randomness
// or map iteration order, so every node that applies the same entries holds the same bytes.
//
// All replicated state lives in segment records: the stream index, the dedupe index and the
// timestamp floor are rebuilt from the records at Open. A command that writes nothing (a rejected
// append, a configuration entry) changes no state, so replaying it after a restart is harmless;
// entries at or below the raft index recovered from the data are skipped, so nothing is applied
// twice. See DESIGN.md for the reasoning.
package fsm
