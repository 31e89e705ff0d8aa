package secret_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/secret"
)

const canary = "CANARY-123-45-6789"

func TestNeverPrints(t *testing.T) {
	type patient struct {
		Name string
		SSN  secret.String
		Key  secret.Bytes
	}
	p := patient{Name: "Ada", SSN: canary, Key: secret.Bytes(canary)}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		outs = append(outs, fmt.Sprintf(verb, p), fmt.Sprintf(verb, p.SSN), fmt.Sprintf(verb, p.Key))
	}
	outs = append(outs, fmt.Sprint(p), fmt.Sprintln(p.SSN, p.Key))
	j, err := json.Marshal(p)
	require.NoError(t, err)
	outs = append(outs, string(j))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("patient", "ssn", p.SSN, "key", p.Key, "p", p)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("patient", "ssn", p.SSN, "key", p.Key)
	outs = append(outs, buf.String())
	for _, o := range outs {
		assert.NotContains(t, o, canary)
		assert.NotContains(t, o, fmt.Sprintf("%x", canary))
	}
	assert.Contains(t, string(j), secret.Redacted)
	assert.Equal(t, canary, p.SSN.Reveal())
	v, err := p.SSN.Value()
	require.NoError(t, err)
	assert.Equal(t, canary, v)
	p.Key.Wipe()
	assert.Equal(t, make([]byte, len(canary)), p.Key.Reveal())
}

func ExampleString() {
	ssn := secret.String("123-45-6789")
	fmt.Println(ssn, len(ssn.Reveal()))
	// Output: [REDACTED] 11
}
