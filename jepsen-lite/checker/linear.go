package checker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairndb/cairn/jepsen-lite/history"
)

// LinearOptions configure the linearizability checker.
type LinearOptions struct {
	// Timeout bounds the check of one stream (default 60 s); Budget bounds all streams together
	// (default 3 minutes). A stream whose check times out is Unknown, which is not a pass.
	Timeout, Budget time.Duration
	// VizDir, when set, receives linear/<stream>.html porcupine visualisations of every stream
	// that is not linearizable (Illegal or Unknown), with fault windows as annotations.
	VizDir string
}

// resolved describes what happened to logical writes before checking.
type resolved struct {
	acked, recovered, dropped, indefinite, conflicts int
}

// StreamOps builds each stream's porcupine history from the analysis (see DESIGN.md):
// acknowledged writes are Ok over [first call, ack]; writes of unknown outcome are resolved from
// the final truth (all ids present contiguously: Ok at that length, returning no later than the
// first read that saw them; absent and never observed: dropped; anything else stays Indefinite
// with Return +inf); conflict attempts are checks that the stream did not have the expected
// length; linearizable whole-stream reads and heads are reads.
func (a *Analysis) StreamOps() (map[string][]porcupine.Operation, resolved) {
	var res resolved
	out := map[string][]porcupine.Operation{}
	clients := map[string]map[int]int{}
	client := func(stream string, p int) int {
		m := clients[stream]
		if m == nil {
			m = map[int]int{}
			clients[stream] = m
		}
		if c, ok := m[p]; ok {
			return c
		}
		m[p] = len(m)
		return m[p]
	}
	// Reads per stream, and the ids each stream's reads observed.
	readsOf := map[string][]history.Operation{}
	observed := map[uint64]bool{}
	for _, r := range a.Reads {
		readsOf[r.Stream()] = append(readsOf[r.Stream()], r)
		for _, id := range r.Out().Events {
			observed[id] = true
		}
		if r.F() == history.Head && r.Out().LastID != 0 {
			observed[r.Out().LastID] = true
		}
	}
	truthPos := map[uint64]int64{}
	for _, ids := range a.Truth {
		for i, id := range ids {
			if _, dup := truthPos[id]; !dup {
				truthPos[id] = int64(i)
			}
		}
	}
	for _, w := range a.Writes {
		in := Input{Kind: OpAppend, Expected: w.Expected, IDs: w.IDs, Op: w.FirstOp()}
		first := w.Attempts[0]
		switch w.Outcome {
		case history.OK:
			res.acked++
			out[w.Stream] = append(out[w.Stream], porcupine.Operation{ClientId: client(w.Stream, first.Process()),
				Input: in, Call: w.Call, Output: Output{Outcome: Ok, Version: w.Version()}, Return: w.Return})
		case history.Info:
			if _, known := a.Truth[w.Stream]; !known {
				res.indefinite++
				out[w.Stream] = append(out[w.Stream], porcupine.Operation{ClientId: client(w.Stream, first.Process()),
					Input: in, Call: w.Call, Output: Output{Outcome: Indefinite}, Return: history.Never})
				break
			}
			start, present := truthPos[w.IDs[0]]
			contiguous := present
			anyPresent := false
			for i, id := range w.IDs {
				p, ok := truthPos[id]
				anyPresent = anyPresent || ok
				contiguous = contiguous && ok && p == start+int64(i)
			}
			anyObserved := false
			for _, id := range w.IDs {
				anyObserved = anyObserved || observed[id]
			}
			switch {
			case contiguous:
				res.recovered++
				ret := history.Never
				for _, r := range readsOf[w.Stream] {
					if r.Return >= w.Call && readLen(r) > start && r.Return < ret {
						ret = r.Return
					}
				}
				out[w.Stream] = append(out[w.Stream], porcupine.Operation{ClientId: client(w.Stream, first.Process()),
					Input: in, Call: w.Call, Output: Output{Outcome: Ok, Version: start + int64(len(w.IDs))}, Return: ret})
			case !anyPresent && !anyObserved:
				res.dropped++
			default:
				res.indefinite++
				out[w.Stream] = append(out[w.Stream], porcupine.Operation{ClientId: client(w.Stream, first.Process()),
					Input: in, Call: w.Call, Output: Output{Outcome: Indefinite}, Return: history.Never})
			}
		}
		for _, at := range w.Attempts {
			if at.Type == history.Fail && at.Out().Error == history.ReasonWrongExpectedRevision {
				res.conflicts++
				out[w.Stream] = append(out[w.Stream], porcupine.Operation{ClientId: client(w.Stream, at.Process()),
					Input: Input{Kind: OpAppend, Expected: w.Expected, IDs: w.IDs, Op: at.Inv.Index}, Call: at.Call,
					Output: Output{Outcome: Conflict, Version: at.Out().Version}, Return: at.Return})
			}
		}
	}
	for _, r := range a.Reads {
		s := r.Stream()
		switch {
		case r.F() == history.Head:
			out[s] = append(out[s], porcupine.Operation{ClientId: client(s, r.Process()),
				Input: Input{Kind: OpHead, Op: r.Inv.Index}, Call: r.Call,
				Output: Output{Version: r.Out().Version, LastID: r.Out().LastID}, Return: r.Return})
		case r.Inv.From == 0 && r.Out().End:
			ev := r.Out().Events
			out[s] = append(out[s], porcupine.Operation{ClientId: client(s, r.Process()),
				Input: Input{Kind: OpRead, Op: r.Inv.Index}, Call: r.Call,
				Output: Output{Version: int64(len(ev)), Hash: Fold(0, ev)}, Return: r.Return})
		}
	}
	return out, res
}

// Linearizable checks every stream's history against StreamModel with porcupine.
func Linearizable(a *Analysis, opts LinearOptions) *Result {
	start := time.Now()
	r := newResult("linearizable", true)
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Budget <= 0 {
		opts.Budget = 3 * time.Minute
	}
	perStream, res := a.StreamOps()
	streams := make([]string, 0, len(perStream))
	for s := range perStream {
		streams = append(streams, s)
	}
	sort.Strings(streams)
	deadline := time.Now().Add(opts.Budget)
	results := make(map[string]porcupine.CheckResult, len(streams))
	var mu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				left := time.Until(deadline)
				cr := porcupine.Unknown
				if left > 0 {
					cr = porcupine.CheckOperationsTimeout(StreamModel, perStream[s], min(opts.Timeout, left))
				}
				mu.Lock()
				results[s] = cr
				mu.Unlock()
			}
		}()
	}
	for _, s := range streams {
		work <- s
	}
	close(work)
	wg.Wait()

	var illegal, unknown []string
	ops := 0
	for _, s := range streams {
		ops += len(perStream[s])
		switch results[s] {
		case porcupine.Illegal:
			illegal = append(illegal, s)
			r.add(Anomaly{Kind: "not-linearizable", Stream: s,
				Detail: fmt.Sprintf("no linearization of the %d operations on stream %s exists", len(perStream[s]), s)})
		case porcupine.Unknown:
			unknown = append(unknown, s)
		}
	}
	if len(unknown) > 0 {
		r.unknown()
		r.Counts["unknown"] = len(unknown)
	}
	if len(a.Missing) > 0 {
		r.unknown()
		r.Counts["no-final-read"] = len(a.Missing)
	}
	r.Counts["streams"] = len(streams)
	r.Counts["ops"] = ops
	r.Counts["acked"], r.Counts["recovered"], r.Counts["dropped"] = res.acked, res.recovered, res.dropped
	r.Counts["indefinite"], r.Counts["conflict-checks"] = res.indefinite, res.conflicts
	r.Extra["illegal"] = illegal
	r.Extra["unknown"] = unknown
	r.Extra["missing_truth"] = a.Missing
	if opts.VizDir != "" {
		var viz []string
		for _, s := range append(append([]string(nil), illegal...), unknown...) {
			if p, err := a.visualize(s, perStream[s], opts); err == nil {
				viz = append(viz, p)
			} else {
				r.Extra["viz_error"] = err.Error()
			}
		}
		r.Extra["viz"] = viz
	}
	r.Summary = fmt.Sprintf("%d streams, %d ops, %d illegal, %d unknown; appends acked %d, recovered %d, dropped %d, indefinite %d",
		len(streams), ops, len(illegal), len(unknown), res.acked, res.recovered, res.dropped, res.indefinite)
	if len(a.Missing) > 0 {
		r.Summary += fmt.Sprintf("; %d streams without a final read", len(a.Missing))
	}
	r.Millis = time.Since(start).Milliseconds()
	return r
}

// visualize writes linear/<stream>.html for one stream, with fault windows annotated.
func (a *Analysis) visualize(stream string, ops []porcupine.Operation, opts LinearOptions) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	type result struct {
		info porcupine.LinearizationInfo
	}
	done := make(chan result, 1)
	go func() {
		_, info := porcupine.CheckOperationsVerbose(StreamModel, ops, opts.Timeout)
		done <- result{info}
	}()
	var info porcupine.LinearizationInfo
	select {
	case res := <-done:
		info = res.info
	case <-ctx.Done():
		return "", fmt.Errorf("visualising %s: %w", stream, ctx.Err())
	}
	var ann []porcupine.Annotation
	var first, last int64 = history.Never, 0
	for _, o := range ops {
		first = min(first, o.Call)
		if o.Return != history.Never {
			last = max(last, o.Return)
		}
	}
	for _, w := range a.Windows {
		if w.Stop < first || w.Start > last {
			continue
		}
		ann = append(ann, porcupine.Annotation{Tag: "nemesis", Start: w.Start, End: w.Stop,
			Description: w.Fault, Details: strings.Join(w.Targets, ",") + " " + w.Value,
			BackgroundColor: FaultColor(w.Fault)})
	}
	info.AddAnnotations(ann)
	dir := filepath.Join(opts.VizDir, "linear")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("visualising %s: %w", stream, err)
	}
	rel := filepath.Join("linear", safeName(stream)+".html")
	if err := porcupine.VisualizePath(StreamModel, info, filepath.Join(opts.VizDir, rel)); err != nil {
		return "", fmt.Errorf("visualising %s: %w", stream, err)
	}
	return rel, nil
}

func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}

// FaultColor is the shading of a fault kind in plots and visualisations (Jepsen's palette).
func FaultColor(fault string) string {
	switch {
	case strings.HasPrefix(fault, "kill"):
		return "#E9A4A0"
	case strings.HasPrefix(fault, "pause"):
		return "#A0B1E9"
	case strings.HasPrefix(fault, "slow"), strings.HasPrefix(fault, "lossy"):
		return "#D1E8A0"
	case strings.HasPrefix(fault, "member"):
		return "#C8A0E9"
	case strings.HasPrefix(fault, "snapshot"):
		return "#E9C8A0"
	default: // partitions
		return "#E9DCA0"
	}
}
