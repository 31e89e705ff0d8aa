package config

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/fieldcrypt/fieldcrypt/audit"
)

// AuditSink returns the sink audit_log configures: a JSON-lines file
// appended to (created 0600), stderr for "-", audit.Discard when unset.
// Events without an actor get Actor (else audit.DefaultActor's), and
// error texts pass through redact (a DSN's password, say; nil: none).
// close closes the file. A file that cannot be opened sends events to
// stderr, with a warning there, rather than losing them.
func (c *Config) AuditSink(stderr io.Writer, redact func(string) string) (sink audit.Sink, close func() error, err error) {
	close = func() error { return nil }
	var w io.Writer
	switch c.AuditLog {
	case "":
		return audit.Discard, close, nil
	case "-":
		w = stderr
	default:
		path := ResolvePath(c.BaseDir, c.AuditLog)
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			_, _ = io.WriteString(stderr, "fieldcrypt: warning: cannot open audit log "+path+": "+err.Error()+" (audit events go to stderr)\n")
			w = stderr
		} else {
			w, close = f, f.Close
		}
	}
	actor := c.Actor
	inner := audit.NewSlogSink(slog.New(slog.NewJSONHandler(w, nil)))
	return audit.SinkFunc(func(ctx context.Context, e audit.Event) {
		if e.Actor == "" {
			e.Actor = actor
		}
		if redact != nil {
			e.Error = redact(e.Error)
		}
		inner.Record(ctx, e)
	}), close, nil
}

// ActorName is the configured actor, else audit.DefaultActor().
func (c *Config) ActorName() string {
	if c.Actor != "" {
		return c.Actor
	}
	return audit.DefaultActor()
}
