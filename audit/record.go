package audit

import (
	"encoding/base64"
	"encoding/binary"
	"sort"
	"strconv"
	"strings"
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
