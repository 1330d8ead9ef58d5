package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// newLogger builds the hook's logger: warnings and errors on stderr (libvirt
// shows a failing hook's stderr in its error and logs it otherwise), and
// everything at info level to the journal when journald runs, else to the
// log file. Never stdout: that is data for migrate/restore.
func newLogger(e env, stderr interface{ Write([]byte) (int, error) }, inv invocation) (*slog.Logger, func()) {
	l, _, closer := newLoggers(e, stderr, inv)
	return l, closer
}

// newLoggers returns the logger and one that skips stderr, for a failure
// whose message the hook already printed there for libvirt.
func newLoggers(e env, stderr interface{ Write([]byte) (int, error) }, inv invocation) (*slog.Logger, *slog.Logger, func()) {
	handlers := []slog.Handler{slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})}
	closers := []func(){}
	if e.Journal != "" {
		if _, err := os.Stat(e.Journal); err == nil {
			if j, err := newJournalHandler(e.Journal); err == nil {
				handlers = append(handlers, j)
				closers = append(closers, j.close)
			}
		}
	}
	if len(handlers) == 1 && e.LogPath != "" {
		w := &lazyFile{path: e.LogPath}
		handlers = append(handlers, slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
		closers = append(closers, w.close)
	}
	attrs := []any{"hook", inv.kind.String(), "op", inv.op, "object", inv.object, "pid", os.Getpid()}
	l := slog.New(fanout(handlers)).With(attrs...)
	quiet := slog.New(fanout(handlers[1:])).With(attrs...)
	return l, quiet, func() {
		for _, c := range closers {
			c()
		}
	}
}

// lazyFile opens the log file on the first record, so an invocation that
// logs nothing (an unmanaged domain) does not touch it.
type lazyFile struct {
	path string
	once sync.Once
	f    *os.File
}

func (l *lazyFile) Write(p []byte) (int, error) {
	l.once.Do(func() {
		_ = os.MkdirAll(filepath.Dir(l.path), 0o755)
		l.f, _ = os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	})
	if l.f == nil {
		return len(p), nil // logging must never fail the hook
	}
	// O_APPEND and one write per record keep lines of parallel hooks whole.
	return l.f.Write(p)
}

func (l *lazyFile) close() {
	if l.f != nil {
		l.f.Close()
	}
}

// fanout sends each record to every handler that wants it.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, lv slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, lv) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			_ = h.Handle(ctx, r.Clone())
		}
	}
	return nil
}

func (f fanout) WithAttrs(a []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(a)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}

// journalHandler writes records to journald's native protocol socket: one
// datagram of FIELD=value lines per record (values with a newline use the
// protocol's length-prefixed form).
type journalHandler struct {
	conn  *net.UnixConn
	attrs []slog.Attr
}

func newJournalHandler(socket string) (*journalHandler, error) {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	return &journalHandler{conn: c}, nil
}

func (j *journalHandler) close() { j.conn.Close() }

func (j *journalHandler) Enabled(_ context.Context, lv slog.Level) bool {
	return lv >= slog.LevelInfo
}

func (j *journalHandler) Handle(_ context.Context, r slog.Record) error {
	var b bytes.Buffer
	prio := "6"
	switch {
	case r.Level >= slog.LevelError:
		prio = "3"
	case r.Level >= slog.LevelWarn:
		prio = "4"
	}
	field(&b, "MESSAGE", r.Message)
	field(&b, "PRIORITY", prio)
	field(&b, "SYSLOG_IDENTIFIER", "gallium-net-hook")
	add := func(a slog.Attr) bool {
		field(&b, journalKey(a.Key), a.Value.String())
		return true
	}
	for _, a := range j.attrs {
		add(a)
	}
	r.Attrs(add)
	_, err := j.conn.Write(b.Bytes())
	return err
}

func (j *journalHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return &journalHandler{conn: j.conn, attrs: append(append([]slog.Attr(nil), j.attrs...), a...)}
}

func (j *journalHandler) WithGroup(string) slog.Handler { return j }

// journalKey turns an slog key into a journal field name: upper case
// letters, digits and underscores, prefixed so it never clashes with
// journald's own fields.
func journalKey(k string) string {
	var b strings.Builder
	b.WriteString("GALLIUM_")
	for _, r := range strings.ToUpper(k) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func field(b *bytes.Buffer, k, v string) {
	if !strings.Contains(v, "\n") {
		b.WriteString(k + "=" + v + "\n")
		return
	}
	b.WriteString(k + "\n")
	_ = binary.Write(b, binary.LittleEndian, uint64(len(v)))
	b.WriteString(v + "\n")
}
