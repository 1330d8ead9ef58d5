package storemember

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcdLog receives etcd's zap logging at warn level and above: it passes
// it on to slog (the journal, under systemd) and keeps the last few
// messages, because etcd reports most of its traps (a cluster ID
// mismatch, a removed member, a refused handshake) only as log lines while
// Start waits; they are what makes a timeout explainable.
type etcdLog struct {
	log *slog.Logger

	mu     sync.Mutex
	recent []string
	quiet  bool
}

const recentMax = 8

// deliberate are etcd's warnings about choices this package made on
// purpose; at warn level they would greet the operator at every start.
var deliberate = []string{
	// gRPC and HTTP share the client port: one port to open per member.
	"Running http and grpc server on single port. This is not recommended for production.",
	// etcd's own authentication is off: mutual TLS is the store's.
	"simple token is not cryptographically signed",
	// A learner that has not received its first snapshot yet has no
	// schema to read; etcd retries and succeeds once it has caught up.
	"Failed to detect schema version",
	"failed to update storage version",
}

func newEtcdLog(log *slog.Logger) *etcdLog { return &etcdLog{log: log} }

func (l *etcdLog) zapLogger() *zap.Logger { return zap.New(zapCore{l: l}) }

// silence drops everything from now on: etcd logs its own orderly
// shutdown with errors ("http: Server closed"), which would read as
// failures in the journal at every stop.
func (l *etcdLog) silence() {
	l.mu.Lock()
	l.quiet = true
	l.mu.Unlock()
}

// lastMessages returns the recent distinct messages, oldest first.
func (l *etcdLog) lastMessages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recent)
}

func (l *etcdLog) write(ent zapcore.Entry, fields map[string]any) {
	note := ent.Message
	if e, ok := fields["error"]; ok {
		note += ": " + fmt.Sprint(e)
	}
	l.mu.Lock()
	if l.quiet {
		l.mu.Unlock()
		return
	}
	l.recent = slices.DeleteFunc(l.recent, func(s string) bool { return s == note })
	l.recent = append(l.recent, note)
	if len(l.recent) > recentMax {
		l.recent = l.recent[len(l.recent)-recentMax:]
	}
	l.mu.Unlock()

	level := slog.LevelWarn
	if ent.Level > zapcore.WarnLevel {
		level = slog.LevelError
	}
	if slices.Contains(deliberate, ent.Message) {
		level = slog.LevelDebug
	}
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, fields[k]))
	}
	l.log.LogAttrs(context.Background(), level, "etcd: "+ent.Message, attrs...)
}

// zapCore is the zapcore.Core behind etcdLog.
type zapCore struct {
	l      *etcdLog
	fields []zapcore.Field
}

func (c zapCore) Enabled(level zapcore.Level) bool { return level >= zapcore.WarnLevel }

func (c zapCore) With(fields []zapcore.Field) zapcore.Core {
	return zapCore{l: c.l, fields: append(slices.Clip(c.fields), fields...)}
}

func (c zapCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c zapCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	c.l.write(ent, enc.Fields)
	return nil
}

func (c zapCore) Sync() error { return nil }
