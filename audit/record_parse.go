package audit

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Parsing the chained log's lines: a strict reader of exactly what the
// writer (record.go) writes, so that what the MAC covers is what any JSON
// reader sees.

const timeFormat = time.RFC3339Nano

// errParse marks a line that is not a record of the schema.
var errParse = errors.New("not a record of the chained log's schema")

// parseRecord parses one line (without its newline). It accepts only what
// the writer writes: one flat JSON object without white space, with the
// schema's fields, each at most once, strings non-empty and valid UTF-8,
// integers in plain decimal, binary fields in padded standard base64, and
// nothing after the object.
func parseRecord(line []byte) (*record, error) {
	bad := func(format string, args ...any) (*record, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{errParse}, args...)...)
	}
	if len(line) > maxLine {
		return bad("line of %d bytes", len(line))
	}
	p := &jsonScanner{b: line}
	if !p.byte('{') {
		return bad("not a JSON object")
	}
	r := &record{}
	var seen fieldSet
	var typ, kind string
	var kek uint64
	for first := true; !p.byte('}'); first = false {
		if !first && !p.byte(',') {
			return bad("bad JSON at byte %d", p.i)
		}
		name, ok := p.str()
		if !ok || !p.byte(':') {
			return bad("bad JSON at byte %d", p.i)
		}
		bit := fieldBit(name)
		if bit == 0 {
			return bad("unknown field %q", name)
		}
		if seen&bit != 0 {
			return bad("field %q appears twice", name)
		}
		seen |= bit
		var err error
		switch name {
		case "seq":
			r.Seq, err = p.uint()
		case "kek_version":
			if kek, err = p.uint(); err == nil && (kek == 0 || kek > 1<<32-1) {
				err = errParse
			}
		case "counts":
			r.Event.Counts, err = p.counts()
		case "wrapped_key", "prev", "mac":
			var b []byte
			if b, err = p.base64(); err == nil {
				switch name {
				case "wrapped_key":
					r.WrappedKey = b
				case "prev":
					r.Prev = b
				default:
					r.MAC = b
				}
			}
		default:
			v, ok := p.str()
			if !ok || v == "" {
				err = errParse
			}
			*r.strField(name, &typ, &kind) = v
		}
		if err != nil {
			return bad("field %q: bad value", name)
		}
	}
	if p.i != len(p.b) {
		return bad("data after the object")
	}
	r.Event.Type, r.Event.ActorKind, r.Event.KEKVersion = Type(typ), ActorKind(kind), uint32(kek)
	return r, r.checkShape(seen)
}

// strField returns where a string field goes.
func (r *record) strField(name string, typ, kind *string) *string {
	e := &r.Event
	switch name {
	case "msg":
		return &r.Msg
	case "level":
		return &r.Level
	case "chain":
		return &r.Chain
	case "at":
		return &r.at
	case "log":
		return &r.Log
	case "event":
		return typ
	case "actor_kind":
		return kind
	case "outcome":
		return &e.Outcome
	case "actor":
		return &e.Actor
	case "purpose":
		return &e.Purpose
	case "class":
		return &e.Class
	case "tenant":
		return &e.Tenant
	case "master_key_uri":
		return &e.MasterKeyURI
	case "table":
		return &e.Table
	case "column":
		return &e.Column
	case "row":
		return &e.Row
	case "job":
		return &e.Job
	case "error":
		return &e.Error
	case "note":
		return &e.Note
	}
	return &e.Filter
}

// fieldSet is a set of schema fields, one bit each.
type fieldSet uint64

var fieldNames = []string{"msg", "level", "chain", "at", "log", "seq", "prev", "mac", "wrapped_key", "event", "outcome",
	"actor", "actor_kind", "purpose", "class", "tenant", "kek_version", "master_key_uri", "table", "column", "row",
	"job", "error", "note", "filter", "counts"}

func fieldBit(name string) fieldSet {
	for i, n := range fieldNames {
		if n == name {
			return 1 << i
		}
	}
	return 0
}

func (s fieldSet) has(name string) bool { return s&fieldBit(name) != 0 }

// jsonScanner reads the strict JSON subset of the chained log.
type jsonScanner struct {
	b []byte
	i int
}

func (p *jsonScanner) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a JSON string.
func (p *jsonScanner) str() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) { // fast path: no escapes
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			return string(s), utf8.Valid(s)
		}
		if c == '\\' || c < 0x20 {
			break
		}
		p.i++
	}
	var out []byte
	out = append(out, p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(out), utf8.Valid(out)
		case c < 0x20:
			return "", false
		case c != '\\':
			out = append(out, c)
			p.i++
			continue
		}
		p.i++
		if p.i >= len(p.b) {
			return "", false
		}
		e := p.b[p.i]
		p.i++
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
					save := p.i
					p.i += 2
					if r2, ok = p.hex4(); !ok {
						return "", false
					}
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						out = utf8.AppendRune(out, d)
						continue
					}
					p.i = save
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
	}
	return "", false
}

func (p *jsonScanner) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

// digits reads a plain decimal integer: no sign, no leading zero (but
// "0"), no fraction or exponent.
func (p *jsonScanner) digits() (string, bool) {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	s := string(p.b[start:p.i])
	return s, s != "" && (len(s) == 1 || s[0] != '0')
}

func (p *jsonScanner) uint() (uint64, error) {
	s, ok := p.digits()
	if !ok {
		return 0, errParse
	}
	return strconv.ParseUint(s, 10, 64)
}

func (p *jsonScanner) base64() ([]byte, error) {
	s, ok := p.str()
	if !ok || s == "" {
		return nil, errParse
	}
	return base64.StdEncoding.Strict().DecodeString(s)
}

// counts reads the counts object: names to integers, at least one.
func (p *jsonScanner) counts() (map[string]int64, error) {
	if !p.byte('{') {
		return nil, errParse
	}
	c := map[string]int64{}
	for first := true; !p.byte('}'); first = false {
		if !first && !p.byte(',') {
			return nil, errParse
		}
		name, ok := p.str()
		if !ok || name == "" || !p.byte(':') {
			return nil, errParse
		}
		if _, dup := c[name]; dup {
			return nil, errParse
		}
		neg := p.byte('-')
		s, ok := p.digits()
		if !ok || neg && s == "0" {
			return nil, errParse
		}
		if neg {
			s = "-" + s
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, errParse
		}
		c[name] = v
	}
	if len(c) == 0 {
		return nil, errParse
	}
	return c, nil
}

// checkShape checks that a parsed record has the fields of its kind.
func (r *record) checkShape(seen fieldSet) error {
	need := []string{"msg", "at", "log", "seq", "prev", "mac"}
	var forbidden fieldSet
	switch r.Msg {
	case msgHeader:
		need = append(need, "chain", "wrapped_key")
		forbidden = ^(fieldBit("chain") | fieldBit("wrapped_key") | fieldBit("master_key_uri"))
		if r.Chain != chainFormat {
			return fmt.Errorf("%w: unsupported chain format %q", errParse, r.Chain)
		}
	case msgEvent:
		need = append(need, "level", "event", "outcome", "actor")
		forbidden = fieldBit("chain") | fieldBit("wrapped_key")
		if r.Level != slog.LevelInfo.String() && r.Level != slog.LevelWarn.String() {
			return fmt.Errorf("%w: level %q", errParse, r.Level)
		}
	default:
		return fmt.Errorf("%w: msg %q", errParse, r.Msg)
	}
	for _, f := range need {
		forbidden &^= fieldBit(f)
		if !seen.has(f) {
			return fmt.Errorf("%w: field %q missing", errParse, f)
		}
	}
	if bad := seen & forbidden; bad != 0 {
		for _, f := range fieldNames {
			if bad.has(f) {
				return fmt.Errorf("%w: field %q does not belong in a %s record", errParse, f, r.Msg)
			}
		}
	}
	if len(r.Prev) != macSize || len(r.MAC) != macSize {
		return fmt.Errorf("%w: prev and mac must be %d bytes", errParse, macSize)
	}
	t, err := time.Parse(timeFormat, r.at)
	if err != nil {
		return fmt.Errorf("%w: field at is not an RFC 3339 time", errParse)
	}
	r.Event.Time = t
	return nil
}
