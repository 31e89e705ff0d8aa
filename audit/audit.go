// Package audit records what fieldcrypt did with keys and protected data,
// and on whose behalf, as structured events with a stable schema, through a
// pluggable Sink.
//
// For the common case, record into a hash-chained log whose key the KMS
// protects, and name the person or service behind each request:
//
//	chain, _ := audit.OpenChain(ctx, audit.ChainOptions{Path: "audit.jsonl", MasterKey: mk, Checkpoints: cps})
//	defer chain.Close()
//	db.Use(gormcrypt.New(kr).WithAudit(chain))
//	ctx = audit.WithActor(ctx, audit.Person("support:jane"))
//	ctx = audit.WithPurpose(ctx, "ticket 4711")
//
// Verify shows any change to the files; BuildReport says who read what,
// when, why and how often, and what stands out; MarkReviewed records a
// review in the log itself. A plain JSON slog handler (NewSlogSink) writes
// the same schema without the chain.
//
// Why a schema of its own: auditors ask "who destroyed which key, when",
// "who read this customer's data, and why" and "was anything tampered
// with", and the answer must not depend on log message wording. Every
// event carries Type and Outcome; the other fields are set when they
// apply. The schema is documented in docs/audit.md and only ever grows.
//
// Why a chain: a log anyone with file access can edit proves nothing. Each
// record of a Chain carries an HMAC over itself and the previous record
// under a key only the KMS can unwrap, and checkpoints kept elsewhere
// vouch for the newest records; docs/audit.md says exactly what is and is
// not detected.
//
// What an event never contains: a plaintext, a key or a password. Events
// name actors, purposes, classes, tenants, key versions, master key URIs,
// tables, columns and row ids. Error texts come from fieldcrypt errors,
// which obey the same rule; Record refuses nothing, so callers must not put
// values into Counts keys, Error, Purpose or Note.
package audit

import (
	"context"
	"errors"
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
	DecryptFailed       Type = "decrypt.failed"  // authentication failure: possible tampering
	DecryptAccess       Type = "decrypt.access"  // a value was decrypted (recorded as the class's Policy says)
	DecryptRefused      Type = "decrypt.refused" // a read was refused before anything was decrypted (ErrPurposeRequired)
	ConsoleShow         Type = "console.show"    // rows were shown at the console (metadata only)
	AuditReviewed       Type = "audit.reviewed"  // a reviewer marked a range of the log as reviewed
	AuditRecovered      Type = "audit.recovered" // the chained log dropped a torn last line after a crash
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
	Outcome      string    // OK or Error
	Actor        string    // who: WithActor's name, a configured principal, else OS user@host
	ActorKind    ActorKind // KindPerson or KindService when stated, else empty
	Purpose      string    // why: WithPurpose, the console's --reason
	Class        string
	Tenant       string
	KEKVersion   uint32
	MasterKeyURI string
	Table        string
	Column       string
	Row          string
	Job          string // re-encryption job or backup export id
	Error        string // error text (fieldcrypt errors carry no secrets)
	Note         string // a reviewer's note (audit.reviewed)
	Filter       string // what a review covered, e.g. "actor=support:jane table=patients"
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

// Multi sends every event to each sink in turn. Its Err (see SinkErr)
// reports the first failing sink.
func Multi(sinks ...Sink) Sink { return multi(sinks) }

type multi []Sink

func (m multi) Record(ctx context.Context, e Event) {
	for _, s := range m {
		s.Record(ctx, e)
	}
}

func (m multi) Flush() error {
	var errs []error
	for _, s := range m {
		errs = append(errs, FlushSink(s))
	}
	return errors.Join(errs...)
}

func (m multi) Err() error {
	for _, s := range m {
		if err := SinkErr(s); err != nil {
			return err
		}
	}
	return nil
}

// slogSink writes events as slog records with message "fieldcrypt.audit".
type slogSink struct{ l *slog.Logger }

// NewSlogSink returns a Sink writing each event as one slog record at Info
// (Warn for failures and destructions), message "fieldcrypt.audit", with
// the event fields as attributes named as in docs/audit.md.
func NewSlogSink(l *slog.Logger) Sink { return slogSink{l: l} }

func (s slogSink) Record(ctx context.Context, e Event) {
	e = FillContext(ctx, e)
	w := slogAttrs{t: e.Time}
	eventFields(&e, "-", &w)
	s.l.LogAttrs(ctx, Level(e), "fieldcrypt.audit", w.attrs...)
}

// slogAttrs collects an event's fields as slog attributes.
type slogAttrs struct {
	t     time.Time
	attrs []slog.Attr
}

func (w *slogAttrs) str(name, v string) {
	if name == "at" {
		w.attrs = append(w.attrs, slog.Time(name, w.t))
		return
	}
	w.attrs = append(w.attrs, slog.String(name, v))
}
func (w *slogAttrs) num(name string, v uint64) { w.attrs = append(w.attrs, slog.Uint64(name, v)) }
func (w *slogAttrs) bin(string, []byte)        {}
func (w *slogAttrs) counts(c map[string]int64) {
	cs := make([]any, 0, len(c))
	for _, k := range sortedKeys(c) {
		cs = append(cs, slog.Int64(k, c[k]))
	}
	w.attrs = append(w.attrs, slog.Group("counts", cs...))
}

// Level is the slog level of an event: Warn for failures, refusals,
// destructions and the use of an unsealed key store, Info otherwise.
func Level(e Event) slog.Level {
	switch {
	case e.Outcome == Error, e.Type == DecryptFailed, e.Type == DecryptRefused, e.Type == KEKDestroyed,
		e.Type == TenantShredded, e.Type == KeyringUnsealed, e.Type == AuditRecovered:
		return slog.LevelWarn
	}
	return slog.LevelInfo
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

// FillContext sets the actor and purpose from ctx (Attribute), then Time,
// Outcome and Actor when they are still empty (Fill).
func FillContext(ctx context.Context, e Event) Event { return Fill(Attribute(ctx, e)) }

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
// and every other event always.
//
// Deprecated: sampling is a per-class decision: set Policy.Record to
// RecordSampled for the classes that may be sampled (gormcrypt's
// WithAccessPolicy), so critical data keeps every access. Sampled drops
// access events of every class alike.
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
func (m *Memory) Record(ctx context.Context, e Event) {
	e = FillContext(ctx, e)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e)
}

// Events returns a copy of the recorded events.
func (m *Memory) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.events...)
}
