package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"
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
		e := &r.Event
		w.str("level", r.Level)
		w.str("event", string(e.Type))
		w.str("outcome", e.Outcome)
		w.str("at", r.at)
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
	w.str("log", r.Log)
	w.num("seq", r.Seq)
	w.bin("prev", r.Prev)
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
	for _, s := range []*string{&e.Outcome, &e.Actor, &e.Purpose, &e.Class, &e.Tenant, &e.MasterKeyURI,
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
// the writer writes: a flat JSON object with the schema's fields, each at
// most once, strings non-empty, integers in plain decimal, binary fields
// in padded standard base64, and nothing after the object.
func parseRecord(line []byte) (*record, error) {
	bad := func(format string, args ...any) (*record, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{errParse}, args...)...)
	}
	if len(line) > maxLine {
		return bad("line of %d bytes", len(line))
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return bad("not a JSON object")
	}
	r := &record{}
	seen := map[string]bool{}
	strs := map[string]*string{
		"msg": &r.Msg, "level": &r.Level, "chain": &r.Chain, "at": &r.at, "actor": &r.Event.Actor,
		"purpose": &r.Event.Purpose, "class": &r.Event.Class, "tenant": &r.Event.Tenant,
		"master_key_uri": &r.Event.MasterKeyURI, "table": &r.Event.Table, "column": &r.Event.Column,
		"row": &r.Event.Row, "job": &r.Event.Job, "error": &r.Event.Error, "note": &r.Event.Note,
		"filter": &r.Event.Filter, "log": &r.Log, "outcome": &r.Event.Outcome,
	}
	var typ, kind string
	strs["event"], strs["actor_kind"] = &typ, &kind
	bins := map[string]*[]byte{"wrapped_key": &r.WrappedKey, "prev": &r.Prev, "mac": &r.MAC}
	var kek uint64
	nums := map[string]*uint64{"seq": &r.Seq, "kek_version": &kek}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return bad("bad JSON")
		}
		name, _ := t.(string)
		if seen[name] {
			return bad("field %q appears twice", name)
		}
		seen[name] = true
		switch {
		case strs[name] != nil || bins[name] != nil:
			t, err := dec.Token()
			s, ok := t.(string)
			if err != nil || !ok || s == "" {
				return bad("field %q is not a non-empty string", name)
			}
			if p := strs[name]; p != nil {
				*p = s
				continue
			}
			b, err := base64.StdEncoding.Strict().DecodeString(s)
			if err != nil {
				return bad("field %q is not base64", name)
			}
			*bins[name] = b
		case nums[name] != nil:
			t, err := dec.Token()
			n, ok := t.(json.Number)
			if err != nil || !ok {
				return bad("field %q is not a number", name)
			}
			v, err := parseDecimal(string(n))
			if err != nil || v == 0 && name == "kek_version" {
				return bad("field %q is not a positive decimal integer", name)
			}
			*nums[name] = v
		case name == "counts":
			c, err := parseCounts(dec)
			if err != nil {
				return bad("field counts: %v", err)
			}
			r.Event.Counts = c
		default:
			return bad("unknown field %q", name)
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return bad("bad JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("data after the object")
	}
	if kek > 1<<32-1 {
		return bad("kek_version out of range")
	}
	r.Event.Type, r.Event.ActorKind, r.Event.KEKVersion = Type(typ), ActorKind(kind), uint32(kek)
	return r, r.checkShape(seen)
}

// checkShape checks that a parsed record has the fields of its kind.
func (r *record) checkShape(seen map[string]bool) error {
	need := []string{"msg", "at", "log", "seq", "prev", "mac"}
	allowed := map[string]bool{}
	switch r.Msg {
	case msgHeader:
		need = append(need, "chain", "wrapped_key")
		for _, f := range []string{"chain", "wrapped_key", "master_key_uri"} {
			allowed[f] = true
		}
		if r.Chain != chainFormat {
			return fmt.Errorf("%w: unsupported chain format %q", errParse, r.Chain)
		}
	case msgEvent:
		need = append(need, "level", "event", "outcome", "actor")
		for f := range seen {
			allowed[f] = f != "chain" && f != "wrapped_key"
		}
		if r.Level != slog.LevelInfo.String() && r.Level != slog.LevelWarn.String() {
			return fmt.Errorf("%w: level %q", errParse, r.Level)
		}
	default:
		return fmt.Errorf("%w: msg %q", errParse, r.Msg)
	}
	for _, f := range need {
		allowed[f] = true
		if !seen[f] {
			return fmt.Errorf("%w: field %q missing", errParse, f)
		}
	}
	for f := range seen {
		if !allowed[f] {
			return fmt.Errorf("%w: field %q does not belong in a %s record", errParse, f, r.Msg)
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

// parseDecimal accepts a plain decimal integer: digits only, no sign, no
// leading zero (except "0"), no exponent or fraction.
func parseDecimal(s string) (uint64, error) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, errParse
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errParse
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

func parseCounts(dec *json.Decoder) (map[string]int64, error) {
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	c := map[string]int64{}
	for dec.More() {
		t, err := dec.Token()
		name, ok := t.(string)
		if err != nil || !ok || name == "" {
			return nil, errors.New("bad name")
		}
		if _, dup := c[name]; dup {
			return nil, fmt.Errorf("%q appears twice", name)
		}
		t, err = dec.Token()
		n, ok := t.(json.Number)
		if err != nil || !ok {
			return nil, fmt.Errorf("%q is not a number", name)
		}
		s, neg := strings.CutPrefix(string(n), "-")
		v, err := parseDecimal(s)
		if err != nil || v > 1<<63 || !neg && v == 1<<63 || neg && v == 0 {
			return nil, fmt.Errorf("%q is not a decimal integer", name)
		}
		if neg {
			c[name] = -int64(v-1) - 1
		} else {
			c[name] = int64(v)
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, errors.New("not an object")
	}
	if len(c) == 0 {
		return nil, errors.New("empty")
	}
	return c, nil
}
