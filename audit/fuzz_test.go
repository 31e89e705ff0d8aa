package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// FuzzParseRecord: the chained log's line parser never panics, and what
// it accepts encodes back to a record that parses the same and has the
// same MAC input (what the MAC covers is what a reader sees).
func FuzzParseRecord(f *testing.F) {
	keys, err := deriveKeys(make([]byte, logKeySize))
	if err != nil {
		f.Fatal(err)
	}
	h := newRecordHMAC(keys)
	ev := &record{Msg: msgEvent, Level: "INFO", Log: "0123", Seq: 7, Prev: make([]byte, macSize), at: time.Unix(1, 5).UTC().Format(timeFormat),
		Event: Event{Type: DecryptAccess, Outcome: OK, Actor: "support:jane", ActorKind: KindPerson, Purpose: "ticket \"4711\"\n",
			Class: "critical", Table: "patients", Column: "ssn", Row: "42", KEKVersion: 3, Counts: map[string]int64{"n": -9, "m": 1 << 40}}}
	ev.MAC, _ = recordMAC(h, ev, nil, nil)
	hdr := &record{Msg: msgHeader, Chain: chainFormat, WrappedKey: []byte{1, 2, 3}, Log: "0123", Seq: 1, Prev: make([]byte, macSize),
		at: time.Unix(0, 0).UTC().Format(timeFormat), Event: Event{MasterKeyURI: "local:///k"}}
	hdr.MAC, _ = recordMAC(h, hdr, nil, nil)
	for _, r := range []*record{ev, hdr} {
		line := r.appendJSON(nil)
		f.Add(line[:len(line)-1])
	}
	f.Add([]byte(`{"msg":"fieldcrypt.audit","msg":"x"}`))
	f.Add([]byte(`{"msg":"a\ud83d\ude00\u0041\/","log":"\ud800"}`))
	f.Add([]byte(`{"seq":1e3}`))
	f.Add([]byte(`{"counts":{"a":-9223372036854775808}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := parseRecord(line)
		if err != nil {
			return
		}
		if !json.Valid(line) {
			t.Fatalf("accepted a line that is not JSON: %q", line)
		}
		var generic map[string]any
		if err := json.Unmarshal(line, &generic); err != nil || generic["log"] != r.Log || generic["msg"] != r.Msg {
			t.Fatalf("encoding/json reads the line differently: %v %q", err, line)
		}
		out := r.appendJSON(nil)
		r2, err := parseRecord(out[:len(out)-1])
		if err != nil {
			t.Fatalf("re-encoded record does not parse: %v\n%s", err, out)
		}
		if !bytes.Equal(r.appendMACInput(nil), r2.appendMACInput(nil)) {
			t.Fatalf("MAC input changed through a round trip:\n%q\n%q", line, out)
		}
	})
}
