package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes hashicorp/raft's hclog output to slog, so a node has one log stream with
// one format. Levels map one to one (Trace goes to Debug-4).
type hclogAdapter struct {
	l     *slog.Logger
	name  string
	level hclog.Level
	args  []any
}

// newHclog returns an hclog.Logger that writes to l at level and above.
func newHclog(l *slog.Logger, name string, level hclog.Level) hclog.Logger {
	return &hclogAdapter{l: l, name: name, level: level}
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...interface{}) {
	if level == hclog.Off || level < h.level {
		return
	}
	all := make([]any, 0, len(h.args)+len(args)+2)
	if h.name != "" {
		all = append(all, "logger", h.name)
	}
	all = append(all, h.args...)
	all = append(all, args...)
	for i, a := range all {
		// hclog.Fmt values are format strings with arguments, rendered lazily by hclog itself.
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				all[i] = fmt.Sprintf(format, f[1:]...)
			}
		}
	}
	h.l.Log(context.Background(), slogLevel(level), msg, all...)
}

func (h *hclogAdapter) Trace(msg string, args ...interface{}) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...interface{}) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...interface{})  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...interface{})  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...interface{}) { h.Log(hclog.Error, msg, args...) }
func (h *hclogAdapter) IsTrace() bool                         { return h.level <= hclog.Trace }
func (h *hclogAdapter) IsDebug() bool                         { return h.level <= hclog.Debug }
func (h *hclogAdapter) IsInfo() bool                          { return h.level <= hclog.Info }
func (h *hclogAdapter) IsWarn() bool                          { return h.level <= hclog.Warn }
func (h *hclogAdapter) IsError() bool                         { return h.level <= hclog.Error }
func (h *hclogAdapter) ImpliedArgs() []interface{}            { return h.args }
func (h *hclogAdapter) Name() string                          { return h.name }
func (h *hclogAdapter) GetLevel() hclog.Level                 { return h.level }
func (h *hclogAdapter) SetLevel(level hclog.Level)            { h.level = level }

func (h *hclogAdapter) With(args ...interface{}) hclog.Logger {
	c := *h
	c.args = append(append([]any{}, h.args...), args...)
	return &c
}

func (h *hclogAdapter) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(h.l.Handler(), slogLevel(h.level))
}

func (h *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return h.StandardLogger(opts).Writer()
}
