package checker

import (
	"time"

	"github.com/cairndb/cairn/jepsen-lite/history"
)

// Options configure a full check.
type Options struct {
	// Linear configures the linearizability checker.
	Linear LinearOptions
	// NodeLogs maps node ids to their log files, for LogScan.
	NodeLogs map[string]string
	// LivenessWithin bounds the recovery after the final heal (default 30 s).
	LivenessWithin time.Duration
}

// Report is the outcome of checking one history.
type Report struct {
	// Verdict folds the safety checkers (see Combine).
	Verdict Verdict `json:"valid"`
	// Results are the checkers' results in a fixed order.
	Results []*Result `json:"checkers"`
	// Problems are inconsistencies in the history itself; any makes the verdict Unknown.
	Problems []string `json:"history_problems,omitempty"`
	// Analysis is the shared view the checkers used (not serialised).
	Analysis *Analysis `json:"-"`
}

// Check runs every checker on a history.
func Check(ops []history.Op, opts Options) (*Report, error) {
	a, err := Analyze(ops)
	if err != nil {
		return nil, err
	}
	if opts.LivenessWithin <= 0 {
		opts.LivenessWithin = 30 * time.Second
	}
	rep := &Report{Analysis: a, Problems: a.Problems}
	rep.Results = []*Result{
		Linearizable(a, opts.Linear),
		VersionOrder(a),
		Global(a),
		Follower(a),
		Convergence(a),
		Errors(a),
		LogScan(opts.NodeLogs),
		Liveness(a, opts.LivenessWithin),
	}
	rep.Verdict = Combine(rep.Results)
	if len(a.Problems) > 0 && rep.Verdict == Valid {
		rep.Verdict = Unknown
	}
	return rep, nil
}

// Get returns the named checker's result, or nil.
func (r *Report) Get(name string) *Result {
	for _, res := range r.Results {
		if res.Name == name {
			return res
		}
	}
	return nil
}
