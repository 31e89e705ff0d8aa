package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEveryCommandHasHelpAndExamples(t *testing.T) {
	a := &app{io: IO{Getenv: func(string) string { return "" }}}
	root := a.rootCmd()
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		n++
		assert.NotEmpty(t, c.Short, "%s has no Short", c.CommandPath())
		assert.NotEmpty(t, c.Example, "%s has no Example", c.CommandPath())
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	assert.Greater(t, n, 20)

	e := newEnv(t)
	for _, args := range [][]string{
		{"--help"}, {"init", "--help"}, {"keys", "--help"}, {"keys", "destroy", "--help"}, {"reencrypt", "--help"},
		{"encrypt-existing", "--help"}, {"backup", "encrypt", "--help"}, {"quickstart", "--help"}, {"bench", "--help"},
	} {
		r := e.ok(args...)
		assert.Contains(t, r.stdout, "Examples:", "%v", args)
	}
}

func TestCompletion(t *testing.T) {
	e := newEnv(t)
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		r := e.ok("completion", sh)
		assert.Contains(t, r.stdout, "fieldcrypt", sh)
	}
}

func TestInitBootstrapsDevelopmentSetup(t *testing.T) {
	e := newEnv(t)
	r := e.ok("init")
	assert.Contains(t, r.stderr, "No configuration found")
	for _, f := range []string{"fieldcrypt.yaml", ".fieldcrypt/master-critical.key", ".fieldcrypt/master-high.key", ".fieldcrypt/master-moderate.key", ".fieldcrypt/master-low.key"} {
		fi, err := os.Stat(filepath.Join(e.dir, f))
		require.NoError(t, err, f)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), f)
	}
	fi, err := os.Stat(filepath.Join(e.dir, "fieldcrypt.db"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.Contains(t, r.stdout, "created  critical v1")

	// idempotent
	r = e.ok("init", "-o", "json")
	var res initResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	assert.Empty(t, res.Created)
	assert.Len(t, res.Existing, 4)

	var keks []kekJSON
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "list", "-o", "json").stdout), &keks))
	require.Len(t, keks, 4)
	for _, k := range keks {
		assert.True(t, k.Primary)
		assert.Equal(t, "active", k.State)
		assert.True(t, strings.HasPrefix(k.MasterKeyURI, "local://"+filepath.Join(e.dir, ".fieldcrypt", "master-")),
			"stored canonical (absolute), not relative to where init ran: %s", k.MasterKeyURI)
	}
	assert.Contains(t, e.auditLog(), `"event":"kek.created"`)
	assert.Contains(t, e.auditLog(), `"actor":"tester"`)
}

func TestInitWithoutBootstrapNeedsConfig(t *testing.T) {
	e := newEnv(t)
	e.code(ExitUsage, "init", "--no-bootstrap")
}

func TestCommandsBeforeInit(t *testing.T) {
	e := newEnv(t)
	e.write("fieldcrypt.yaml", "classes:\n  low: {master_key: local://low.key}\n")
	r := e.code(ExitUsage, "keys", "list")
	assert.Contains(t, r.stderr, "fieldcrypt init")
}

// quickstartEnv runs quickstart in a temp dir and returns an env working
// in it.
func quickstartEnv(t *testing.T) (*env, quickstartResult) {
	t.Helper()
	e := newEnv(t)
	r := e.ok("quickstart", "--dir", "qs", "-o", "json")
	var res quickstartResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stdout)
	e.dir = filepath.Join(e.dir, "qs")
	return e, res
}

func TestQuickstart(t *testing.T) {
	e := newEnv(t)
	r := e.ok("quickstart", "--dir", "qs")
	for _, want := range []string{"1. Created", "2. Wrote 5 patients", "3. One row as stored", "fc1:", "lookup by SSN through the blind index: true",
		"6. Rotated", "7. Re-encrypted", "critical/v2=8", "plaintext: 0; failing to open: 0", "KMS calls"} {
		assert.Contains(t, r.stdout, want)
	}
	// the setup is usable by the other commands
	e.dir = filepath.Join(e.dir, "qs")
	var c censusResult
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "census", "-o", "json").stdout), &c))
	assert.Equal(t, int64(18), c.Encrypted)
	assert.Zero(t, c.Plaintext)
	// refuses to reuse a directory
	e.dir = filepath.Dir(e.dir)
	e.code(ExitUsage, "quickstart", "--dir", "qs")
}

func TestQuickstartJSONAndDefaultTempDir(t *testing.T) {
	e := newEnv(t)
	r := e.ok("quickstart", "-o", "json")
	var res quickstartResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	t.Cleanup(func() { os.RemoveAll(res.Dir) })
	assert.DirExists(t, res.Dir)
	assert.Equal(t, 5, res.PatientsWritten)
	assert.True(t, res.ReadBackOK)
	assert.True(t, res.BlindIndexHit)
	assert.Equal(t, int64(13), res.Reencrypt.Changed)
	assert.Equal(t, uint64(10), res.KMS["wrap_calls"], "4 KEKs and 4 class keys at init + 2 rotations")
	for _, v := range res.After {
		if v.Suite == "randomized" {
			assert.Equal(t, uint32(2), v.Version, "%+v", v)
		}
	}
	for col, v := range res.RawRow {
		if col == "name" || col == "ssn" || col == "email" || col == "notes" {
			assert.True(t, strings.HasPrefix(v, "fc1:"), col)
		}
	}
	assert.Less(t, res.DurationS, 10.0)
}

func TestDestroyRefusesWhileCensusFindsValues(t *testing.T) {
	e, _ := quickstartEnv(t)
	// critical: data under v2 (after the quickstart's rewrap); v1 is the
	// search key. Rotate: v3 primary, v2 decrypt-only and still used.
	e.ok("keys", "rotate", "--class", "critical")

	// Until running processes have stopped using v2 as their primary:
	// refused, naming the time left, before any census or prompt.
	r := e.code(ExitRefused, "keys", "destroy", "--class", "critical", "--version", "2", "--yes")
	assert.Contains(t, r.stderr, "v2 was primary until")
	assert.Contains(t, r.stderr, "3m0s left")
	r = e.code(ExitRefused, "keys", "retire", "--class", "critical", "--version", "2")
	assert.Contains(t, r.stderr, "every process stops using it by")
	var keks []kekJSON
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "list", "-o", "json", "--class", "critical").stdout), &keks))
	require.NotNil(t, keks[1].InUseUntil)
	assert.Equal(t, keks[1].DemotedAt.Add(3*time.Minute), *keks[1].InUseUntil)
	assert.Contains(t, e.ok("keys", "list").stdout, keks[1].InUseUntil.Format(time.RFC3339))
	e.afterDemotion()

	r = e.code(ExitRefused, "keys", "destroy", "--class", "critical", "--version", "2", "--yes")
	assert.Contains(t, r.stderr, "census found 8 values")
	// --force without --yes and without a terminal: refused
	r = e.code(ExitRefused, "keys", "destroy", "--class", "critical", "--version", "2", "--force")
	assert.Contains(t, r.stderr, "--yes")
	// a terminal, but the wrong answer
	e.terminal = true
	r = e.runIn("critical/v1\n", "keys", "destroy", "--class", "critical", "--version", "2", "--force")
	require.Equal(t, ExitRefused, r.code, r.all())
	assert.Contains(t, r.stderr, "not confirmed")
	// primary and search keys are never destroyed
	e.code(ExitRefused, "keys", "destroy", "--class", "critical", "--version", "3", "--yes")
	e.code(ExitRefused, "keys", "destroy", "--class", "critical", "--version", "1", "--yes")
	// unknown version: key error
	e.code(ExitKey, "keys", "destroy", "--class", "critical", "--version", "9", "--yes")

	// the right answer on a terminal, with --force: destroyed
	r = e.runIn("critical/v2\n", "keys", "destroy", "--class", "critical", "--version", "2", "--force", "-o", "json")
	require.Equal(t, ExitOK, r.code, r.all())
	var dr destroyResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &dr))
	assert.Equal(t, int64(8), dr.ValuesFound)
	assert.Equal(t, "destroyed", dr.KEK.State)
	assert.NotNil(t, dr.KEK.DestroyedAt)
	e.terminal = false

	// census now reports them as undecryptable (key destroyed): exit 0,
	// not an integrity failure
	var c censusResult
	r = e.ok("keys", "census", "-o", "json")
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &c))
	assert.Equal(t, int64(8), c.Failed[failKeyDestroyed])
	// reencrypt cannot move them: key error
	e.code(ExitKey, "reencrypt", "--column", "patients.ssn")

	log := e.auditLog()
	assert.Contains(t, log, `"event":"kek.destroyed","outcome":"ok"`)
	assert.Contains(t, log, `"forced":1`)
}

func TestRetireThenDestroyAfterReencrypt(t *testing.T) {
	e, _ := quickstartEnv(t)
	e.ok("keys", "rotate", "--class", "critical")
	e.afterDemotion()
	// v2 still has data: retire is allowed (reversible), census sees failures
	e.ok("keys", "retire", "--class", "critical", "--version", "2")
	var c censusResult
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "census", "-o", "json").stdout), &c))
	assert.Equal(t, int64(8), c.Failed[failKeyRetired])
	e.ok("keys", "retire", "--class", "critical", "--version", "2", "--undo")
	// move the data, then destroy without --force
	r := e.ok("reencrypt", "--column", "patients.ssn", "--column", "patients.notes", "--workers", "2", "--batch-size", "2")
	assert.Contains(t, r.stdout, "3 rewrapped")
	r = e.ok("keys", "destroy", "--class", "critical", "--version", "2", "--yes")
	assert.Contains(t, r.stdout, "destroyed critical/v2")
	e.ok("keys", "census")
}

func TestRotateSearch(t *testing.T) {
	e, _ := quickstartEnv(t)
	// high: email is deterministic under search key v1; primary is v2
	e.ok("keys", "rotate", "--class", "high", "--search")
	r := e.code(ExitRefused, "keys", "rotate", "--class", "high", "--finish-search")
	assert.Contains(t, r.stderr, "deterministic values")
	e.ok("reencrypt", "--column", "patients.email", "--full")
	r = e.ok("keys", "rotate", "--class", "high", "--finish-search", "-o", "json")
	assert.Contains(t, r.stdout, `"search_versions": [`)
	e.afterDemotion() // v1 was demoted by the quickstart's rotation
	// v1 is no longer a search key and holds no data: it can go
	e.ok("keys", "destroy", "--class", "high", "--version", "1", "--yes")
}

func TestRewrapMasterKey(t *testing.T) {
	e, _ := quickstartEnv(t)
	r := e.ok("keys", "rewrap", "--class", "critical", "--to", "local://.fieldcrypt/master-critical-2.key", "--create-key", "-o", "json")
	var rr rewrapResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rr))
	assert.Equal(t, 2, rr.Rewrapped)
	assert.NotEmpty(t, rr.ConfigUpdated)
	data, err := os.ReadFile(filepath.Join(e.dir, "fieldcrypt.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(data), "master-critical-2.key")
	assert.Contains(t, string(data), "# fieldcrypt configuration", "comments kept")
	// resumable: nothing left to do
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "rewrap", "--class", "critical", "--to", "local://.fieldcrypt/master-critical-2.key", "-o", "json").stdout), &rr))
	assert.Equal(t, 0, rr.Rewrapped)
	assert.Equal(t, 2, rr.AlreadyDone)
	// the old master key is no longer needed
	require.NoError(t, os.Remove(filepath.Join(e.dir, ".fieldcrypt", "master-critical.key")))
	e.ok("keys", "census")
	// a key of another class is refused
	e.code(ExitUsage, "keys", "rewrap", "--class", "critical", "--to", "local://.fieldcrypt/master-high.key")
}

func TestMasterKeyUnavailable(t *testing.T) {
	e, _ := quickstartEnv(t)
	require.NoError(t, os.Remove(filepath.Join(e.dir, ".fieldcrypt", "master-critical.key")))
	e.code(ExitKey, "keys", "census")
}

func TestShredTenant(t *testing.T) {
	e := tenantEnv(t)
	e.code(ExitUsage, "keys", "shred")
	e.code(ExitRefused, "keys", "shred", "--tenant", "acme")
	r := e.ok("keys", "shred", "--tenant", "acme", "--yes", "--report", "acme-shred.json")
	assert.Contains(t, r.stdout, "SHRED REPORT")
	assert.Contains(t, r.stdout, "destroyed critical/tenant=acme v1")
	data, err := os.ReadFile(filepath.Join(e.dir, "acme-shred.json"))
	require.NoError(t, err)
	var rep shredReport
	require.NoError(t, json.Unmarshal(data, &rep))
	assert.Equal(t, "acme", rep.Tenant)
	assert.Equal(t, "tester", rep.Actor)
	require.Len(t, rep.Destroyed, 1)
	assert.Equal(t, "destroyed", rep.Destroyed[0].State)
	fi, err := os.Stat(filepath.Join(e.dir, "acme-shred.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	var keks []kekJSON
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "list", "-o", "json").stdout), &keks))
	states := map[string]string{}
	for _, k := range keks {
		states[scopeName(k.Class, k.Tenant)] = k.State
	}
	assert.Equal(t, map[string]string{"critical": "active", "critical/tenant=acme": "destroyed", "critical/tenant=globex": "active", "low": "active"}, states)
	audit, err := os.ReadFile(filepath.Join(e.dir, "audit.jsonl"))
	require.NoError(t, err)
	assert.Contains(t, string(audit), `"event":"tenant.shredded"`)
}

func TestInitTenantsFile(t *testing.T) {
	e := newEnv(t)
	e.write("fieldcrypt.yaml", `classes:
  critical: {master_key: "local://k/critical.key", tenant_scoped: true}
  low: {master_key: "local://k/low.key"}
`)
	e.write("tenants.txt", "# tenants of the import\nacme\n\n  globex  \nacme\n")
	var res initResult
	require.NoError(t, json.Unmarshal([]byte(e.ok("init", "--tenants-file", "tenants.txt", "-o", "json").stdout), &res))
	assert.Equal(t, 2, res.TenantsCreated)
	r := e.ok("init", "--tenants-file", "tenants.txt")
	assert.Contains(t, r.stdout, "tenants: 0 scopes created, 2 existed")

	var keks []kekJSON
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "list", "-o", "json").stdout), &keks))
	wrapped := map[string]string{}
	for _, k := range keks {
		wrapped[scopeName(k.Class, k.Tenant)] = k.WrappedBy
	}
	assert.Equal(t, map[string]string{"critical": "master-key", "critical/tenant=acme": "class-key", "critical/tenant=globex": "class-key", "low": "master-key"}, wrapped)
	assert.Contains(t, e.ok("keys", "list").stdout, "(class key)")

	e.write("empty.txt", "# nobody\n")
	e.code(ExitUsage, "init", "--tenants-file", "empty.txt")
	e.code(ExitUsage, "init", "--tenants-file", "missing.txt")
}

func TestBench(t *testing.T) {
	e := newEnv(t)
	r := e.ok("bench", "--duration", "20ms", "--stream-size", "1", "-o", "json")
	var res benchResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	require.Len(t, res.Results, 8)
	for _, row := range res.Results {
		assert.Positive(t, row.NsPerOp, row.Name)
		assert.Positive(t, row.BaselineNsPerOp, row.Name)
		assert.Positive(t, row.RatioToBaseline, row.Name)
		assert.Positive(t, row.MBPerS, row.Name)
	}
	r = e.ok("bench", "--duration", "10ms", "--stream-size", "1")
	assert.Contains(t, r.stdout, "ratio")
	assert.Contains(t, r.stdout, "field seal 64B")
	e.code(ExitUsage, "bench", "--duration", "0s")
}

func TestPromptInterrupted(t *testing.T) {
	e, _ := quickstartEnv(t)
	e.ok("keys", "rotate", "--class", "critical")
	pr, pw := io.Pipe() // a terminal nobody types on
	defer pw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	code := Run(ctx, []string{"keys", "destroy", "--class", "critical", "--version", "2", "--force"}, IO{
		Stdin: pr, Stdout: &out, Stderr: &errb, Dir: e.dir, Getenv: func(k string) string { return e.vars[k] }, StdinTerminal: true,
	})
	require.Equal(t, ExitInterrupted, code, errb.String())
	assert.Contains(t, errb.String(), "Type \"critical/v2\" to confirm")
	// nothing was destroyed
	var keks []kekJSON
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "list", "-o", "json", "--class", "critical").stdout), &keks))
	for _, k := range keks {
		assert.NotEqual(t, "destroyed", k.State)
	}
}

func TestFlagValueCompletion(t *testing.T) {
	e, _ := quickstartEnv(t)
	r := e.ok("__complete", "reencrypt", "--column", "")
	assert.Contains(t, r.stdout, "patients.ssn")
	r = e.ok("__complete", "keys", "rotate", "--class", "")
	assert.Contains(t, r.stdout, "critical")
}
