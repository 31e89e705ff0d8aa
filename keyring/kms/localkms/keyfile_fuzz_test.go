package localkms

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// keyFileErrors are the texts parseKeyFile's errors may have, numbers
// aside (normalized by sizesAside).
var keyFileErrors = map[string]bool{}

func init() {
	for _, m := range []string{
		"not a fieldcrypt local master key file (too large)",
		fmt.Sprintf("not a fieldcrypt local master key file (want first line %q + base64 key)", FilePrefix),
		"key file has more than one line",
		"key is not valid base64",
		"key is 0 bytes, want 0",
	} {
		keyFileErrors[sizesAside(m)] = true
	}
}

var digits = regexp.MustCompile(`[0-9]+`)

func sizesAside(s string) string { return digits.ReplaceAllString(s, "N") }

// FuzzParseKeyFile: the key file parser accepts exactly the format Create
// writes (one line, with or without its line ending), always yields 32
// bytes, round-trips, and never puts file contents in an error.
//
//	go test ./keyring/kms/localkms -run '^$' -fuzz FuzzParseKeyFile -fuzztime 30s
func FuzzParseKeyFile(f *testing.F) {
	const b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	for _, s := range []string{
		FilePrefix + b64 + "\n", FilePrefix + b64, FilePrefix + b64 + "\r\n",
		FilePrefix + b64 + "\n\n", FilePrefix + "AAEC\nAwQF" + b64[8:], FilePrefix + b64[:43] + "\n",
		FilePrefix + strings.TrimSuffix(b64, "=") + "\n", "fieldcrypt-local-master-key/v2:" + b64, "", "\n",
		FilePrefix + b64 + " ", " " + FilePrefix + b64, FilePrefix + b64 + "\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		key, err := parseKeyFile(data)
		if !bytes.Equal(in, data) {
			t.Fatalf("parseKeyFile modified its input")
		}
		if err != nil {
			if key != nil {
				t.Fatalf("key returned with an error")
			}
			// Errors come from a fixed set (sizes aside): they can carry
			// nothing of the file.
			if !keyFileErrors[sizesAside(err.Error())] {
				t.Fatalf("unexpected error text (file contents?): %q", err)
			}
			return
		}
		if len(key) != KeySize {
			t.Fatalf("accepted a %d-byte key", len(key))
		}
		canonical := FilePrefix + base64.StdEncoding.EncodeToString(key)
		switch string(data) {
		case canonical, canonical + "\n", canonical + "\r\n":
		default:
			t.Fatalf("accepted a key file that is not in the format Create writes: %q", data)
		}
		again, err := parseKeyFile([]byte(canonical + "\n"))
		if err != nil || !bytes.Equal(again, key) {
			t.Fatalf("the canonical form of an accepted key does not parse to the same key")
		}
	})
}
