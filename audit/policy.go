package audit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/fieldcrypt/fieldcrypt/fielderr"
)

// ErrPurposeRequired means a read needs a stated purpose (WithPurpose, the
// console's --reason) and had none. Nothing was decrypted; the refusal is
// itself an audit event (decrypt.refused).
var ErrPurposeRequired = fielderr.New(fielderr.Refused, "audit: a purpose is required to read this data")

// Recording says which decrypts of a class are recorded as decrypt.access
// events. Failures (decrypt.failed) and refusals (decrypt.refused) are
// always recorded.
type Recording string

// Recording values, as written in configuration.
const (
	RecordAll     Recording = "all"     // every decrypt
	RecordSampled Recording = "sampled" // a fraction (Policy.SampleRate)
	RecordNone    Recording = "none"    // none
)

// PurposeRule says who must state a purpose before a class is decrypted.
type PurposeRule string

// PurposeRule values, as written in configuration.
const (
	PurposeNever   PurposeRule = "never"   // nobody
	PurposePersons PurposeRule = "persons" // actors that are a Person
	PurposeAlways  PurposeRule = "always"  // everyone, services and unattributed reads too
)

// Policy is the access policy of one class: which decrypts are recorded
// and who must say why. The zero value records everything and requires no
// purpose.
type Policy struct {
	Record Recording
	// SampleRate is the fraction of decrypts recorded under RecordSampled
	// (0 < rate < 1).
	SampleRate float64
	Purpose    PurposeRule
}

// DefaultPolicy is the policy of a class not listed in Policies: critical
// data is recorded on every decrypt and a person must state a purpose;
// every other class is recorded on every decrypt, purpose optional.
func DefaultPolicy(class string) Policy {
	if class == "critical" {
		return Policy{Record: RecordAll, Purpose: PurposePersons}
	}
	return Policy{Record: RecordAll, Purpose: PurposeNever}
}

// Policies maps a class name ("critical", "high", ...) to its policy.
// Classes it does not list get DefaultPolicy.
type Policies map[string]Policy

// For returns the policy of class.
func (ps Policies) For(class string) Policy {
	if p, ok := ps[class]; ok {
		return p.normalized()
	}
	return DefaultPolicy(class)
}

// Validate reports every malformed entry, naming its class.
func (ps Policies) Validate() error {
	classes := make([]string, 0, len(ps))
	for c := range ps {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	var errs []error
	for _, c := range classes {
		if err := ps[c].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("access policy of class %s: %w", c, err))
		}
	}
	return errors.Join(errs...)
}

// Validate reports a malformed policy.
func (p Policy) Validate() error {
	switch p.Record {
	case "", RecordAll, RecordNone:
	case RecordSampled:
		if !(p.SampleRate > 0 && p.SampleRate < 1) {
			return fmt.Errorf("record %q needs a sample rate between 0 and 1 (exclusive), got %v", p.Record, p.SampleRate)
		}
	default:
		return fmt.Errorf("record %q: want all, sampled or none", p.Record)
	}
	switch p.Purpose {
	case "", PurposeNever, PurposePersons, PurposeAlways:
	default:
		return fmt.Errorf("purpose %q: want never, persons or always", p.Purpose)
	}
	return nil
}

func (p Policy) normalized() Policy {
	if p.Record == "" {
		p.Record = RecordAll
	}
	if p.Purpose == "" {
		p.Purpose = PurposeNever
	}
	return p
}

// NeedsPurpose reports whether a read in ctx needs a purpose it does not
// have.
func (p Policy) NeedsPurpose(ctx context.Context) bool {
	switch p.Purpose {
	case PurposeAlways:
	case PurposePersons:
		if a, ok := ActorFrom(ctx); !ok || !a.IsPerson() {
			return false
		}
	default:
		return false
	}
	return PurposeFrom(ctx) == ""
}

// Permit returns an error wrapping ErrPurposeRequired when a read of class
// in ctx needs a purpose it does not have, else nil.
func (p Policy) Permit(ctx context.Context, class string) error {
	if !p.NeedsPurpose(ctx) {
		return nil
	}
	who := "any reader"
	if p.Purpose == PurposePersons {
		who = "a person"
	}
	return fmt.Errorf("%w (class %s, read by %s): state why with audit.WithPurpose or --reason", ErrPurposeRequired, class, who)
}

// Records decides whether one successful decrypt is recorded.
func (p Policy) Records() bool {
	switch p.Record {
	case RecordNone:
		return false
	case RecordSampled:
		return rand.Float64() < p.SampleRate
	}
	return true
}

// ParsePolicy reads a policy from its configuration words: record is
// "all", "none", "sampled" or "sampled:RATE" (e.g. "sampled:0.01");
// purpose is "never", "persons" or "always". Empty words keep the
// defaults of DefaultPolicy(class).
func ParsePolicy(class, record, purpose string) (Policy, error) {
	p := DefaultPolicy(class)
	if record != "" {
		word, rate, hasRate := strings.Cut(record, ":")
		p.Record, p.SampleRate = Recording(word), 0
		if hasRate {
			if _, err := fmt.Sscanf(rate, "%g", &p.SampleRate); err != nil {
				return p, fmt.Errorf("record %q: bad sample rate", record)
			}
		}
	}
	if purpose != "" {
		p.Purpose = PurposeRule(purpose)
	}
	return p, p.Validate()
}

// healthy is implemented by sinks that can fail (a file that cannot be
// written): Err returns the failure, nil while every event is recorded.
type healthy interface{ Err() error }

// SinkErr returns the failure of a sink that can report one (the chained
// log does), else nil. Callers that must not act unrecorded (a decrypt
// whose policy records every access, a reveal at the console) check it
// first and refuse: the safe outcome when an event cannot be recorded is
// not to act.
func SinkErr(s Sink) error {
	if h, ok := s.(healthy); ok {
		return h.Err()
	}
	return nil
}

// FlushSink writes what a buffering sink (the chained log) holds in
// memory, and returns its failure; other sinks have nothing to flush.
func FlushSink(s Sink) error {
	if f, ok := s.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return SinkErr(s)
}
