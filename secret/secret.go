// Package secret has string and byte types for decrypted secrets that never
// print themselves.
//
// Use them for struct fields that hold a decrypted value (an SSN, a token)
// so that a stray log line, a %v in an error, or an API response that
// marshals the whole struct shows "[REDACTED]" instead of the value. Read
// the value with Reveal, on purpose, where it is needed.
//
// They are plain string and []byte underneath, so database drivers and the
// gormcrypt plugin store them like any string or byte slice.
package secret

import (
	"database/sql/driver"
	"fmt"
	"log/slog"
)

// Redacted is what every secret prints as.
const Redacted = "[REDACTED]"

// String is a secret string.
type String string

// Reveal returns the value.
func (s String) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (String) String() string { return Redacted }

// GoString implements fmt.GoStringer (%#v).
func (String) GoString() string { return Redacted }

// Format makes every fmt verb print Redacted.
func (String) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue implements slog.LogValuer.
func (String) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON prints Redacted: a secret is never serialised by accident.
func (String) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText prints Redacted (YAML, XML, and other text encoders).
func (String) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// Value implements driver.Valuer, so databases store the real value.
func (s String) Value() (driver.Value, error) { return string(s), nil }

// Bytes is a secret byte slice.
type Bytes []byte

// Reveal returns the value.
func (b Bytes) Reveal() []byte { return []byte(b) }

// String implements fmt.Stringer.
func (Bytes) String() string { return Redacted }

// GoString implements fmt.GoStringer (%#v).
func (Bytes) GoString() string { return Redacted }

// Format makes every fmt verb print Redacted.
func (Bytes) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue implements slog.LogValuer.
func (Bytes) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON prints Redacted.
func (Bytes) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText prints Redacted.
func (Bytes) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// Value implements driver.Valuer, so databases store the real value.
func (b Bytes) Value() (driver.Value, error) { return []byte(b), nil }

// Wipe zeroes the bytes in place (best effort: copies made earlier are not
// reached).
func (b Bytes) Wipe() { clear(b) }
