package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/ops"
)

// result is what one in-process run of the command produced.
type result struct {
	code   int
	stdout string
	stderr string
}

func (r result) all() string { return r.stdout + "\n" + r.stderr }

// env is a test's isolated environment: a working directory, environment
// variables (the process's are never read) and everything printed.
type env struct {
	t        *testing.T
	dir      string
	vars     map[string]string
	terminal bool // stdin is a terminal (prompts allowed)
	outputs  []string
	skew     time.Duration // how far the commands' clock is ahead of time.Now
}

// advance moves the commands' clock forward (e.g. past the wait before a
// demoted KEK may be retired or destroyed).
func (e *env) advance(d time.Duration) { e.skew += d }

// afterDemotion moves the clock past the time every process stops using
// a version demoted now.
func (e *env) afterDemotion() { e.advance(keyring.MaxStateAge + keyring.DemotionSlack) }

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{t: t, dir: t.TempDir(), vars: map[string]string{"FIELDCRYPT_ACTOR": "tester"}}
}

func (e *env) run(args ...string) result { return e.runIn("", args...) }

// runIn runs args with stdin.
func (e *env) runIn(stdin string, args ...string) result {
	e.t.Helper()
	return e.runCtx(context.Background(), stdin, args...)
}

func (e *env) runCtx(ctx context.Context, stdin string, args ...string) result {
	e.t.Helper()
	var out, errb bytes.Buffer
	code := Run(ctx, args, IO{
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Dir: e.dir,
		Getenv:        func(k string) string { return e.vars[k] },
		StdinTerminal: e.terminal,
		Now:           func() time.Time { return time.Now().Add(e.skew) },
	})
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	e.outputs = append(e.outputs, r.stdout, r.stderr)
	return r
}

// ok runs args and requires exit 0.
func (e *env) ok(args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	require.Equal(e.t, 0, r.code, "fieldcrypt %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r
}

// code runs args and requires the exit code.
func (e *env) code(want int, args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	require.Equal(e.t, want, r.code, "fieldcrypt %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r
}

// auditLog returns the audit log bootstrap configured, if any.
func (e *env) auditLog() string {
	data, _ := os.ReadFile(filepath.Join(e.dir, ".fieldcrypt", "audit.jsonl"))
	return string(data)
}

// everything is all output so far plus the audit log.
func (e *env) everything() string {
	return strings.Join(e.outputs, "\n") + "\n" + e.auditLog()
}

func (e *env) write(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	require.NoError(e.t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// Test-side shapes of the JSON the commands print (the library types
// marshal to these).
type (
	kekJSON struct {
		Class        string     `json:"class"`
		Tenant       string     `json:"tenant,omitempty"`
		Version      uint32     `json:"version"`
		State        string     `json:"state"`
		Primary      bool       `json:"primary"`
		SearchRank   int        `json:"search_rank,omitempty"`
		WrappedBy    string     `json:"wrapped_by"`
		MasterKeyURI string     `json:"master_key_uri"`
		CreatedAt    time.Time  `json:"created_at"`
		DemotedAt    *time.Time `json:"demoted_at,omitempty"`
		InUseUntil   *time.Time `json:"in_use_until,omitempty"`
		DestroyedAt  *time.Time `json:"destroyed_at,omitempty"`
	}
	destroyResult struct {
		KEK         kekJSON `json:"kek"`
		ValuesFound int64   `json:"values_found"`
	}
	shredReport struct {
		Tenant    string    `json:"tenant"`
		Actor     string    `json:"actor"`
		Destroyed []kekJSON `json:"destroyed"`
	}
	initResult struct {
		Created         []kekJSON `json:"created"`
		Existing        []kekJSON `json:"existing"`
		TenantsCreated  int       `json:"tenants_created"`
		TenantsExisting int       `json:"tenants_existing"`
	}
	censusResult    = ops.CensusResult
	rewrapResult    = ops.RewrapResult
	benchResult     = ops.BenchResult
	reencryptResult = ops.ReencryptResult
)

const (
	failKeyDestroyed = "key_destroyed"
	failKeyRetired   = "key_retired"
)
