package kmstest

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// recorder is a testing.TB whose Fatalf records instead of stopping.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

func TestRequireNoSecrets(t *testing.T) {
	secret := RandomKey(t, 32)
	cases := map[string]struct {
		msg  string
		leak bool
	}{
		"clean":         {"kms unwrap with local:///k: authentication failed", false},
		"raw":           {"bad key " + string(secret), true},
		"hex":           {"bad key " + hex.EncodeToString(secret), true},
		"hex-truncated": {"bad key " + hex.EncodeToString(secret)[:20] + "...", true},
		"HEX":           {"bad key " + strings.ToUpper(hex.EncodeToString(secret)), true},
		"base64":        {"bad key " + base64.StdEncoding.EncodeToString(secret), true},
		"base64url":     {"bad key " + base64.RawURLEncoding.EncodeToString(secret), true},
		"percent-v":     {fmt.Sprintf("bad key %v", secret), true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := &recorder{TB: t}
			RequireNoSecrets(r, errors.New(tc.msg), secret)
			assert.Equal(t, tc.leak, r.failed)
		})
	}
	r := &recorder{TB: t}
	RequireNoSecrets(r, nil, secret)
	RequireNoSecrets(r, errors.New("abc"), []byte("abc")) // too short to judge
	assert.False(t, r.failed)
}
