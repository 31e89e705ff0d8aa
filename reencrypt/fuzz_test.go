package reencrypt

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzRowFailureJSON: the JSON a job prints ({"row": ..., "error": ...})
// reads back to what it was, and its reader never panics.
//
//	go test ./reencrypt -run '^$' -fuzz FuzzRowFailureJSON -fuzztime 30s
func FuzzRowFailureJSON(f *testing.F) {
	for _, s := range []string{
		`{"row":"42","error":"fieldcrypt: open t.c row 42: authentication failed"}`, `{}`, `null`, `[]`, `{"row":1}`,
		`{"row":"\u0000","error":"\ud800"}`, `{"row":"a","row":"b"}`, ``, `{"error":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var rf RowFailure
		if err := json.Unmarshal(data, &rf); err != nil {
			return
		}
		if rf.Err == nil {
			// `null` leaves the zero value: nothing to print.
			return
		}
		out, err := json.Marshal(rf)
		if err != nil {
			t.Fatalf("a failure read from JSON does not print: %v", err)
		}
		var back RowFailure
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("printed failure does not read back: %v", err)
		}
		if back.Row != rf.Row || back.Err.Error() != rf.Err.Error() {
			t.Fatalf("failure does not round-trip: %+v, %+v", rf, back)
		}
		again, _ := json.Marshal(back)
		if string(again) != string(out) {
			t.Fatalf("printing is not stable: %s, %s", out, again)
		}
	})
}

// FuzzMode: a job's mode reads only the three names, and prints back as
// read.
func FuzzMode(f *testing.F) {
	for _, s := range []string{"rewrap", "full", "encrypt-existing", "Full", "", "mode(0)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var m Mode
		if err := m.UnmarshalText([]byte(s)); err != nil {
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("error without ErrInvalidOptions: %v", err)
			}
			return
		}
		if b, _ := m.MarshalText(); string(b) != s {
			t.Fatalf("mode %q prints as %q", s, b)
		}
	})
}
