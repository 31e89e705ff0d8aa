package audit

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// The chained log's record format (docs/audit.md, "The chained log").
//
// A record is one JSON object on one line: an event in the slog schema
// plus the chain fields log, seq, prev and mac; or, first in every file, a
// header naming the chain and carrying its wrapped key. The MAC is computed
// over a binary encoding of the record's fields (macInput), never over the
// JSON text, and the JSON parser (parseRecord) accepts exactly the fields
// of the schema, each once, with the types the writer writes: what the MAC
// covers is what a reader sees.

const (
	chainFormat = "fieldcrypt-audit-chain/v1"
	msgEvent    = "fieldcrypt.audit"
	msgHeader   = "fieldcrypt.audit.chain"
	macSize     = 32 // HMAC-SHA256
	// maxLine bounds one record (a reader never buffers more).
	maxLine = 1 << 20
)

// record is one line of the chained log.
type record struct {
	Msg        string // msgEvent or msgHeader
	Level      string // events: "INFO" or "WARN"
	Chain      string // header: chainFormat
	WrappedKey []byte // header: the log key wrapped by the master key
	Event      Event  // events: the event; header: Time and MasterKeyURI
	at         string // the time as written (the MAC covers this text)
	Log        string
	Seq        uint64
	Prev       []byte
	MAC        []byte
}

func (r *record) header() bool { return r.Msg == msgHeader }

// fieldWriter emits the fields of a record, in the one order the writer
// uses, to a JSON encoder and to the MAC input alike.
type fieldWriter interface {
	str(name, v string)
	num(name string, v uint64)
	bin(name string, v []byte)
	counts(m map[string]int64)
}

// fields emits every field of r except mac, skipping empty ones.
func (r *record) fields(w fieldWriter) {
	str := func(name, v string) {
		if v != "" {
			w.str(name, v)
		}
	}
	w.str("msg", r.Msg)
	if r.header() {
		w.str("chain", r.Chain)
		w.str("at", r.at)
		str("master_key_uri", r.Event.MasterKeyURI)
		w.bin("wrapped_key", r.WrappedKey)
	} else {
		w.str("level", r.Level)
		eventFields(&r.Event, r.at, w)
	}
	w.str("log", r.Log)
	w.num("seq", r.Seq)
	w.bin("prev", r.Prev)
}

// eventFields emits the fields of an event in the schema's order (at as
// written), skipping empty ones: the chained log and the slog sink write
// the same fields.
func eventFields(e *Event, at string, w fieldWriter) {
	str := func(name, v string) {
		if v != "" {
			w.str(name, v)
		}
	}
	w.str("event", string(e.Type))
	w.str("outcome", e.Outcome)
	w.str("at", at)
	w.str("actor", e.Actor)
	str("actor_kind", string(e.ActorKind))
	str("purpose", e.Purpose)
	str("class", e.Class)
	str("tenant", e.Tenant)
	if e.KEKVersion != 0 {
		w.num("kek_version", uint64(e.KEKVersion))
	}
	str("master_key_uri", e.MasterKeyURI)
	str("table", e.Table)
	str("column", e.Column)
	str("row", e.Row)
	str("job", e.Job)
	str("error", e.Error)
	str("note", e.Note)
	str("filter", e.Filter)
	if len(e.Counts) > 0 {
		w.counts(e.Counts)
	}
}

// macInput is the unambiguous byte string the record's MAC covers: a
// domain string, then every field as a length-prefixed name and a
// length-prefixed value (integers in decimal, binary fields raw, counts
// sorted by name), in the order of fields.
type macInput struct{ b []byte }

func (m *macInput) lp(s string) {
	m.b = binary.BigEndian.AppendUint32(m.b, uint32(len(s)))
	m.b = append(m.b, s...)
}
func (m *macInput) str(name, v string) { m.lp(name); m.lp(v) }
func (m *macInput) num(name string, v uint64) {
	m.lp(name)
	m.lp(strconv.FormatUint(v, 10))
}
func (m *macInput) bin(name string, v []byte) {
	m.lp(name)
	m.b = binary.BigEndian.AppendUint32(m.b, uint32(len(v)))
	m.b = append(m.b, v...)
}
func (m *macInput) counts(c map[string]int64) {
	m.lp("counts")
	keys := sortedKeys(c)
	m.b = binary.BigEndian.AppendUint32(m.b, uint32(len(keys)))
	for _, k := range keys {
		m.lp(k)
		m.lp(strconv.FormatInt(c[k], 10))
	}
}

func (r *record) appendMACInput(dst []byte) []byte {
	m := macInput{b: append(dst, chainFormat+" record\x00"...)}
	r.fields(&m)
	return m.b
}

// jsonLine writes a record as one JSON line, keys in the order of fields.
type jsonLine struct {
	b     []byte
	first bool
}

func (j *jsonLine) key(name string) {
	if !j.first {
		j.b = append(j.b, ',')
	}
	j.first = false
	j.b = appendJSONString(j.b, name)
	j.b = append(j.b, ':')
}
func (j *jsonLine) str(name, v string) { j.key(name); j.b = appendJSONString(j.b, v) }
func (j *jsonLine) num(name string, v uint64) {
	j.key(name)
	j.b = strconv.AppendUint(j.b, v, 10)
}
func (j *jsonLine) bin(name string, v []byte) {
	j.key(name)
	j.b = append(j.b, '"')
	j.b = base64.StdEncoding.AppendEncode(j.b, v)
	j.b = append(j.b, '"')
}
func (j *jsonLine) counts(c map[string]int64) {
	j.key("counts")
	j.b = append(j.b, '{')
	for i, k := range sortedKeys(c) {
		if i > 0 {
			j.b = append(j.b, ',')
		}
		j.b = appendJSONString(j.b, k)
		j.b = append(j.b, ':')
		j.b = strconv.AppendInt(j.b, c[k], 10)
	}
	j.b = append(j.b, '}')
}

func (r *record) appendJSON(dst []byte) []byte {
	j := jsonLine{b: append(dst, '{'), first: true}
	r.fields(&j)
	j.bin("mac", r.MAC)
	return append(j.b, '}', '\n')
}

func sortedKeys(c map[string]int64) []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. s must be valid UTF-8
// (newRecord makes every string so).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// clean makes every string of an event valid UTF-8, so that the text a
// reader decodes is the text the writer authenticated.
func clean(e Event) Event {
	fix := func(s *string) {
		if !utf8.ValidString(*s) {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
	}
	for _, s := range [...]*string{&e.Outcome, &e.Actor, &e.Purpose, &e.Class, &e.Tenant, &e.MasterKeyURI,
		&e.Table, &e.Column, &e.Row, &e.Job, &e.Error, &e.Note, &e.Filter} {
		fix(s)
	}
	t := string(e.Type)
	fix(&t)
	e.Type = Type(t)
	k := string(e.ActorKind)
	fix(&k)
	e.ActorKind = ActorKind(k)
	if len(e.Counts) > 0 {
		for name := range e.Counts {
			if !utf8.ValidString(name) || name == "" {
				c := make(map[string]int64, len(e.Counts))
				for n, v := range e.Counts {
					if n = strings.ToValidUTF8(n, "\uFFFD"); n == "" {
						n = "\uFFFD"
					}
					c[n] = v
				}
				e.Counts = c
				break
			}
		}
	}
	return e
}

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
