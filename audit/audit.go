// Package audit records what fieldcrypt did with keys and protected data, as
// structured events with a stable schema, through a pluggable Sink.
//
// For the common case, send events to a JSON slog handler on a file that
// your log shipping collects:
//
//	f, _ := os.OpenFile("fieldcrypt-audit.jsonl", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
//	sink := audit.NewSlogSink(slog.New(slog.NewJSONHandler(f, nil)))
//
// Why a schema of its own: auditors ask "who destroyed which key, when" and
// "was anything tampered with", and the answer must not depend on log
// message wording. Every event carries Type and Outcome; the other fields
// are set when they apply. The schema is documented in docs/audit.md and
// only ever grows.
//
// What an event never contains: a plaintext, a key, a password. Events name
// classes, tenants, key versions, master key URIs, tables, columns and row
// ids. Error texts come from fieldcrypt errors, which obey the same rule;
// Record refuses nothing, so callers must not put values into Counts keys
// or Error.
package audit

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/user"
	"sync"
	"time"
)

// Type names what happened. The values are part of the schema.
type Type string

// Event types.
const (
	KEKCreated          Type = "kek.created"
	KEKRotated          Type = "kek.rotated"
	KEKRewrapped        Type = "kek.rewrapped" // moved under a new master key
	KEKRetired          Type = "kek.retired"
	KEKDestroyed        Type = "kek.destroyed"
	MasterKeyUnwrap     Type = "masterkey.unwrap" // a KEK unwrapped by the KMS
	TenantShredded      Type = "tenant.shredded"
	KeyringTamper       Type = "keyring.tamper"        // the key store holds state the keyring did not write: refused
	KeyringUnsealed     Type = "keyring.unsealed"      // an unsealed key store was used (migration window)
	KeyringSealed       Type = "keyring.sealed"        // a class was sealed (upgrade): the operator vouched for its state
	KeyringAccessDenied Type = "keyring.access_denied" // the keyring's configuration does not let the process use that class so (no key was read)
	ReencryptStarted    Type = "reencrypt.started"
	ReencryptProgress   Type = "reencrypt.progress"
	ReencryptFinished   Type = "reencrypt.finished"
	BackupEncrypted     Type = "backup.encrypted"
	BackupDecrypted     Type = "backup.decrypted"
	BackupVerified      Type = "backup.verified"
	DecryptFailed       Type = "decrypt.failed" // authentication failure: possible tampering
	DecryptAccess       Type = "decrypt.access" // a value was read (optional, sampled)
	ConfigValidated     Type = "config.validated"
)

// Outcome values.
const (
	OK    = "ok"
	Error = "error"
)

// Event is one audit record. Zero fields are omitted by the sinks.
type Event struct {
	Time         time.Time
	Type         Type
	Outcome      string // OK or Error
	Actor        string // who: a configured principal, else OS user@host
	Class        string
	Tenant       string
	KEKVersion   uint32
	MasterKeyURI string
	Table        string
	Column       string
	Row          string
	Job          string // re-encryption job or backup export id
	Error        string // error text (fieldcrypt errors carry no secrets)
	Counts       map[string]int64
}

// Sink receives events. Implementations must be safe for concurrent use and
// must not block for long: Record is called on operational paths.
type Sink interface {
	Record(ctx context.Context, e Event)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, e Event)

// Record calls f.
func (f SinkFunc) Record(ctx context.Context, e Event) { f(ctx, e) }

// Discard drops every event.
var Discard Sink = SinkFunc(func(context.Context, Event) {})

// Multi sends every event to each sink in turn.
func Multi(sinks ...Sink) Sink {
	return SinkFunc(func(ctx context.Context, e Event) {
		for _, s := range sinks {
			s.Record(ctx, e)
		}
	})
}

// slogSink writes events as slog records with message "fieldcrypt.audit".
type slogSink struct{ l *slog.Logger }

// NewSlogSink returns a Sink writing each event as one slog record at Info
// (Warn for failures and destructions), message "fieldcrypt.audit", with
// the event fields as attributes named as in docs/audit.md.
func NewSlogSink(l *slog.Logger) Sink { return slogSink{l: l} }

func (s slogSink) Record(ctx context.Context, e Event) {
	e = Fill(e)
	level := slog.LevelInfo
	if e.Outcome == Error || e.Type == DecryptFailed || e.Type == KEKDestroyed || e.Type == TenantShredded || e.Type == KeyringUnsealed {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("event", string(e.Type)),
		slog.String("outcome", e.Outcome),
		slog.Time("at", e.Time),
		slog.String("actor", e.Actor),
	}
	str := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	str("class", e.Class)
	str("tenant", e.Tenant)
	if e.KEKVersion != 0 {
		attrs = append(attrs, slog.Uint64("kek_version", uint64(e.KEKVersion)))
	}
	str("master_key_uri", e.MasterKeyURI)
	str("table", e.Table)
	str("column", e.Column)
	str("row", e.Row)
	str("job", e.Job)
	str("error", e.Error)
	if len(e.Counts) > 0 {
		cs := make([]any, 0, len(e.Counts))
		for k, v := range e.Counts {
			cs = append(cs, slog.Int64(k, v))
		}
		attrs = append(attrs, slog.Group("counts", cs...))
	}
	s.l.LogAttrs(ctx, level, "fieldcrypt.audit", attrs...)
}

var (
	actorOnce sync.Once
	actor     string
)

// DefaultActor is the actor recorded when an event has none:
// FIELDCRYPT_ACTOR if set, else the OS user name and host name.
func DefaultActor() string {
	actorOnce.Do(func() {
		if a := os.Getenv("FIELDCRYPT_ACTOR"); a != "" {
			actor = a
			return
		}
		name := "unknown"
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		host, _ := os.Hostname()
		actor = name + "@" + host
	})
	return actor
}

// Fill sets Time, Outcome and Actor when they are empty.
func Fill(e Event) Event {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.Outcome == "" {
		e.Outcome = OK
	}
	if e.Actor == "" {
		e.Actor = DefaultActor()
	}
	return e
}

// Sampled passes DecryptAccess events to s with probability rate (0 to 1)
// and every other event always. Teams that must show who read what use
// rate 1; others sample, or leave access events off.
func Sampled(s Sink, rate float64) Sink {
	return SinkFunc(func(ctx context.Context, e Event) {
		if e.Type == DecryptAccess && (rate <= 0 || (rate < 1 && rand.Float64() >= rate)) {
			return
		}
		s.Record(ctx, e)
	})
}

// Memory is a Sink that keeps events in memory, for tests and for a CLI
// summary.
type Memory struct {
	mu     sync.Mutex
	events []Event
}

// Record implements Sink.
func (m *Memory) Record(_ context.Context, e Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, Fill(e))
}

// Events returns a copy of the recorded events.
func (m *Memory) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.events...)
}
