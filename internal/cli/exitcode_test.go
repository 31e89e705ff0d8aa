package cli

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/backup"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

func TestExitCode(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("outer: %w", err) }
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"plain error", errors.New("disk full"), ExitError},
		{"usage", usageErrorf("bad flag"), ExitUsage},
		{"invalid config", wrap(keyring.ErrInvalidConfig), ExitUsage},
		{"invalid URI", wrap(kms.ErrInvalidURI), ExitUsage},
		{"envelope authentication", wrap(envelope.ErrAuthentication), ExitIntegrity},
		{"malformed ciphertext", wrap(envelope.ErrMalformed), ExitIntegrity},
		{"backup tampered", wrap(backup.ErrAuthentication), ExitIntegrity},
		{"backup truncated", wrap(backup.ErrTruncated), ExitIntegrity},
		{"census integrity", wrap(errIntegrity), ExitIntegrity},
		{"kms down", wrap(kms.ErrUnavailable), ExitKey},
		{"kms access denied", wrap(kms.ErrAccessDenied), ExitKey},
		{"key destroyed", wrap(envelope.ErrKeyDestroyed), ExitKey},
		{"key retired", errors.Join(envelope.ErrKeyUnavailable, keyring.ErrKeyRetired), ExitKey},
		{"untrusted backup key", wrap(backup.ErrUntrustedKey), ExitKey},
		{"refused by keyring", wrap(keyring.ErrRefused), ExitRefused},
		{"refused by CLI", wrap(errRefused), ExitRefused},
		{"refusal wins over its cause", errors.Join(keyring.ErrRefused, envelope.ErrKeyDestroyed), ExitRefused},
		{"interrupted", wrap(context.Canceled), ExitInterrupted},
		{"interrupt wins over KMS error", errors.Join(kms.ErrUnavailable, context.Canceled), ExitInterrupted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, ExitCode(tt.err))
		})
	}
}

func TestExitCodesAreDocumented(t *testing.T) {
	seen := map[int]bool{}
	for _, e := range ExitCodes {
		require.False(t, seen[e.Code], "code %d listed twice", e.Code)
		seen[e.Code] = true
		require.NotEmpty(t, e.Meaning)
	}
	for _, c := range []int{ExitOK, ExitError, ExitUsage, ExitIntegrity, ExitKey, ExitRefused, ExitInterrupted} {
		require.True(t, seen[c], "code %d not in ExitCodes", c)
	}
	e := newEnv(t)
	r := e.ok("exit-codes", "-o", "json")
	for _, c := range ExitCodes {
		require.Contains(t, r.stdout, fmt.Sprintf(`"code": %d`, c.Code))
	}
	require.Contains(t, e.ok("--help").stdout, "130  interrupted")
}

func TestExitCodeCommandLine(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"help", []string{"--help"}, ExitOK},
		{"unknown command", []string{"frobnicate"}, ExitUsage},
		{"unknown flag", []string{"keys", "list", "--frob"}, ExitUsage},
		{"stray argument", []string{"keys", "list", "extra"}, ExitUsage},
		{"bad output format", []string{"exit-codes", "-o", "xml"}, ExitUsage},
		{"rotate without class", []string{"keys", "rotate", "--master-key", "critical=local://k"}, ExitUsage},
		{"missing explicit config", []string{"keys", "list", "--config", "nope.yaml"}, ExitUsage},
		{"bad master key flag", []string{"keys", "list", "--master-key", "critical"}, ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run(tt.args...)
			assert.Equal(t, tt.want, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
		})
	}
}

func TestInterruptedExits130(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := e.runCtx(ctx, "", "keys", "list")
	require.Equal(t, ExitInterrupted, r.code, r.all())
	// issue 12 §7: it says how to resume, not "context canceled"
	require.Equal(t, "fieldcrypt: interrupted; run the same command again to resume\n", r.stderr)
}

func TestJSONErrors(t *testing.T) {
	e := newEnv(t)
	r := e.code(ExitUsage, "keys", "list", "-o", "json", "--config", "missing.yaml")
	require.Contains(t, r.stdout, `"exit_code":2`)
}
