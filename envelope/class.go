package envelope

import (
	"fmt"
	"strings"
)

// Class is a data classification. Each class has its own master key and
// its own key-encryption keys: keys never cross classification levels.
//
// The numeric values are part of the ciphertext format (the class byte of
// the header) and never change.
type Class uint8

// The classifications, from most to least sensitive. Public data is stored
// in clear and only when a caller says so explicitly; it has no keys.
const (
	Critical Class = 1
	High     Class = 2
	Moderate Class = 3
	Low      Class = 4
	Public   Class = 5
)

var classNames = [...]string{Critical: "critical", High: "high", Moderate: "moderate", Low: "low", Public: "public"}

// Classes lists every classification in order of decreasing sensitivity.
func Classes() []Class { return []Class{Critical, High, Moderate, Low, Public} }

// String returns the lower-case name of the class ("critical", ...).
func (c Class) String() string {
	if c.Valid() {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Valid reports whether c is one of the defined classes.
func (c Class) Valid() bool { return c >= Critical && c <= Public }

// Encrypted reports whether values of this class are encrypted (every class
// but Public).
func (c Class) Encrypted() bool { return c >= Critical && c <= Low }

// ParseClass parses a class name, case-insensitively.
func ParseClass(s string) (Class, error) {
	for c := Critical; c <= Public; c++ {
		if strings.EqualFold(s, classNames[c]) {
			return c, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown classification %q (want critical, high, moderate, low or public)", ErrInvalidInput, s)
}

// MarshalText implements encoding.TextMarshaler.
func (c Class) MarshalText() ([]byte, error) {
	if !c.Valid() {
		return nil, fmt.Errorf("%w: invalid classification %d", ErrInvalidInput, uint8(c))
	}
	return []byte(c.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Class) UnmarshalText(b []byte) error {
	v, err := ParseClass(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}
