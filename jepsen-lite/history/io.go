package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Recorder appends records to a history: it stamps each with the next index and the time since
// the recorder started, keeps them in memory and, when given a writer, streams them as JSON lines
// (so a crashed run still leaves its history behind). It is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	start time.Time
	ops   []Op
	w     *bufio.Writer
	f     io.Closer
	err   error
}

// NewRecorder returns a recorder whose clock starts now. w may be nil (in-memory only); if it
// is an io.Closer, Close closes it.
func NewRecorder(w io.Writer) *Recorder {
	r := &Recorder{start: time.Now()}
	if w != nil {
		r.w = bufio.NewWriterSize(w, 64<<10)
		if c, ok := w.(io.Closer); ok {
			r.f = c
		}
	}
	return r
}

// Now returns the recorder's clock: nanoseconds since it started (monotonic).
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Start returns the wall-clock time the recorder's clock counts from.
func (r *Recorder) Start() time.Time { return r.start }

// Add stamps op with the next index and the current time, records it and returns the stamped
// copy.
func (r *Recorder) Add(op Op) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Index = len(r.ops)
	op.Time = r.Now()
	if n := len(r.ops); n > 0 && op.Time < r.ops[n-1].Time {
		op.Time = r.ops[n-1].Time // keep the file sorted by time even if goroutines race here
	}
	r.ops = append(r.ops, op)
	if r.w != nil && r.err == nil {
		b, err := json.Marshal(op)
		if err == nil {
			b = append(b, '\n')
			_, err = r.w.Write(b)
		}
		if err != nil {
			r.err = fmt.Errorf("history: write record %d: %w", op.Index, err)
		}
	}
	return op
}

// Ops returns a copy of the records so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// Flush writes buffered records out.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil && r.err == nil {
		if err := r.w.Flush(); err != nil {
			r.err = fmt.Errorf("history: flush: %w", err)
		}
	}
	return r.err
}

// Close flushes and closes the writer, if it is a Closer. The in-memory records stay readable.
func (r *Recorder) Close() error {
	err := r.Flush()
	if r.f != nil {
		if cerr := r.f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("history: close: %w", cerr)
		}
		r.f = nil
	}
	return err
}

// WriteOps writes ops as JSON lines.
func WriteOps(w io.Writer, ops []Op) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range ops {
		if err := enc.Encode(&ops[i]); err != nil {
			return fmt.Errorf("history: encode record %d: %w", i, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("history: write: %w", err)
	}
	return nil
}

// ReadOps reads JSON lines written by WriteOps or a Recorder. A truncated last line (a run killed
// mid-write) is ignored; any other malformed line is an error.
func ReadOps(rd io.Reader) ([]Op, error) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 1<<20), 256<<20)
	var ops []Op
	var pendingErr error
	line := 0
	for sc.Scan() {
		line++
		if pendingErr != nil {
			return nil, pendingErr
		}
		b := sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var op Op
		if err := json.Unmarshal(b, &op); err != nil {
			pendingErr = fmt.Errorf("history: line %d: %w", line, err)
			continue
		}
		ops = append(ops, op)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("history: read: %w", err)
	}
	return ops, nil
}

// ReadFile reads a history.jsonl file.
func ReadFile(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	return ReadOps(f)
}
