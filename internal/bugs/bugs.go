// Package bugs plants known bugs in the server for jepsen-lite's canary suite: the harness proves
// it can catch each one. Without the `jepsenbugs` build tag every check is a constant false and the
// compiler removes the buggy branches; with it, CAIRN_BUG (a comma-separated list of names)
// chooses which bugs are live in a process.
package bugs

// Names of the planted bugs. Each is a mistake a real implementation could make.
const (
	// StaleLeaderRead: linearizable reads skip the quorum check (VerifyLeader) and the barrier,
	// so a deposed leader serves stale data.
	StaleLeaderRead = "stale-leader-read"
	// AckBeforeCommit: the leader acknowledges an append as soon as it is proposed, before it is
	// committed, so a crash can lose an acknowledged event.
	AckBeforeCommit = "ack-before-commit"
	// VersionCheckOnLeader: the expected revision is checked against the leader's local state
	// before proposing, instead of inside the state machine, so racing appends both pass.
	VersionCheckOnLeader = "version-check-on-leader-before-propose"
	// DuplicateOnRetry: the state machine ignores the dedupe index, so a retried append is
	// written twice.
	DuplicateOnRetry = "duplicate-on-retry"
	// LeadershipLostAsFailure: an append whose outcome is unknown (leadership lost after
	// proposing) is reported as a definite failure (no leader), so clients wrongly treat it as
	// not applied.
	LeadershipLostAsFailure = "leadership-lost-reported-as-failure"
	// FollowerIgnoresMinIndex: a follower serves STALE reads without waiting for min_log_index,
	// breaking read-your-writes.
	FollowerIgnoresMinIndex = "follower-ignores-min-log-index"
)

// All lists every planted bug.
var All = []string{StaleLeaderRead, AckBeforeCommit, VersionCheckOnLeader, DuplicateOnRetry,
	LeadershipLostAsFailure, FollowerIgnoresMinIndex}
