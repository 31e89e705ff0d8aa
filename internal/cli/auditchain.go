package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/config"
)

// cliSink is the CLI's audit sink: it names the command's actor on every
// event that names none, masks passwords in error texts, and passes on the
// chained log's failures (Err) and flushes. Events are recorded whatever
// the command's context (an interrupted command still records).
type cliSink struct {
	a     *app
	actor audit.Actor
	inner audit.Sink
	chain *audit.Chain // nil: none configured, or it could not be opened
	err   error        // the chained log could not be opened
}

func (s *cliSink) Record(ctx context.Context, e audit.Event) {
	ctx = context.WithoutCancel(ctx)
	e = audit.Attribute(ctx, e)
	if e.Actor == "" {
		e.Actor, e.ActorKind = s.actor.Name, s.actor.Kind
	}
	e.Error = s.a.dsn.Redact(e.Error)
	s.inner.Record(ctx, e)
}

func (s *cliSink) Err() error {
	if s.err != nil {
		return s.err
	}
	return audit.SinkErr(s.inner)
}

func (s *cliSink) Flush() error {
	if s.err != nil {
		return s.err
	}
	return audit.FlushSink(s.inner)
}

// withChain adds the chained log, when configured, to the CLI's sinks.
func (a *app) withChain(cfg *config.Config, sinks []audit.Sink) *cliSink {
	s := &cliSink{a: a, actor: cfg.ActorValue()}
	if cfg.AuditChain != nil {
		c, err := a.openChain(context.Background(), cfg)
		if err != nil {
			s.err = fmt.Errorf("audit chain %s: %w", cfg.AuditChain.Path, err)
			a.note("warning: cannot open the audit chain: %s (commands that must be recorded refuse)", a.dsn.Redact(s.err.Error()))
		} else {
			sinks = append(sinks, c)
			s.chain = c
		}
	}
	s.inner = audit.Multi(sinks...)
	return s
}

// openChain opens the configured chained log (closed with the app).
func (a *app) openChain(ctx context.Context, cfg *config.Config) (*audit.Chain, error) {
	db, err := a.chainDB(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c, err := cfg.OpenAuditChain(ctx, db, func(err error) { a.note("warning: audit checkpoint: %s", a.dsn.Redact(err.Error())) })
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() {
		if err := c.Close(); err != nil {
			a.note("warning: closing the audit chain: %s", a.dsn.Redact(err.Error()))
		}
	})
	return c, nil
}

// chainDB is the database the chain's checkpoints go to (nil when they go
// to a file).
func (a *app) chainDB(ctx context.Context, cfg *config.Config) (*gorm.DB, error) {
	if w := cfg.AuditChain.Checkpoints; w != "" && w != "database" {
		return nil, nil
	}
	return a.openDB(ctx)
}

// verifyOptions are the configured master keys and stored checkpoints.
func (a *app) verifyOptions(ctx context.Context, cfg *config.Config) (audit.VerifyOptions, error) {
	if cfg.AuditChain == nil {
		return cfg.VerifyOptions(ctx, nil)
	}
	db, err := a.chainDB(ctx, cfg)
	if err != nil {
		return audit.VerifyOptions{}, err
	}
	return cfg.VerifyOptions(ctx, db)
}

func (a *app) now() time.Time {
	if a.io.Now != nil {
		return a.io.Now()
	}
	return time.Now()
}

// parseWhen reads --since/--until: an RFC 3339 time, a date, or how long
// before now ("14d", "36h").
func (a *app) parseWhen(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 {
			return a.now().AddDate(0, 0, -days), nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return a.now().Add(-d), nil
	}
	return time.Time{}, usageErrorf("--%s %q: want an RFC 3339 time, a date (2026-11-02) or a duration before now (14d, 36h)", flag, s)
}
