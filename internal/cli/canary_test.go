package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// TestNoPlaintextInAnyOutput seals canary plaintexts through every CLI
// path that handles values, then checks that no canary appears in any
// stdout, stderr or audit log line the commands produced (the one
// exception being backup decrypt's stdout, which is the restored data).
func TestNoPlaintextInAnyOutput(t *testing.T) {
	canaries := map[int]string{}

	// 1. quickstart's sample records, text and JSON output
	e := newEnv(t)
	e.ok("quickstart", "--dir", "qs")
	e.ok("quickstart", "--dir", "qs2", "-o", "json")
	for i, p := range quickstartPatients {
		canaries[100+4*i] = p.Name
		canaries[101+4*i] = p.SSN
		canaries[102+4*i] = p.Email
		if p.Notes != nil {
			canaries[103+4*i] = *p.Notes
		}
	}
	// the console and the chained audit log on quickstart's setup: shows,
	// a search by a canary, reveals with and without a reason, verify,
	// every report format, a review
	e.vars["FIELDCRYPT_CONFIG"] = filepath.Join(e.dir, "qs", "fieldcrypt.yaml")
	e.ok("show", "patients")
	e.ok("show", "patients", "--where", "ssn="+quickstartPatients[1].SSN, "-o", "json")
	e.code(ExitRefused, "show", "patients", "--reveal", "ssn")
	e.ok("show", "patients", "--where", "email="+quickstartPatients[1].Email, "--reveal", "ssn", "--reason", "ticket 1")
	e.outputs[len(e.outputs)-2] = "" // the reveal's stdout is the data itself
	for _, o := range []string{"text", "json", "csv"} {
		e.ok("audit", "report", "-o", o)
	}
	e.ok("audit", "verify", "-o", "json")
	e.ok("audit", "review", "--note", "canary review")
	delete(e.vars, "FIELDCRYPT_CONFIG")
	qs := e.everything() + readFile(t, filepath.Join(e.dir, "qs", ".fieldcrypt", "audit.jsonl")) +
		readFile(t, filepath.Join(e.dir, "qs", ".fieldcrypt", "audit-chain.jsonl"))
	require.Contains(t, qs, `"event":"decrypt.access"`)

	// 2. encrypt-existing of a canary column, then a failing decrypt:
	// two row-bound ciphertexts swapped between rows
	db, dsn := testsvc.OpenDSN(t, testsvc.SQLite)
	secrets := map[int]string{1: "CANARY-ee-alpha", 2: "CANARY-ee-bravo", 3: "CANARY-ee-charlie", 4: "CANARY-ee-delta"}
	plainTable(t, db, secrets)
	f := flowEnv(t, dsn)
	f.ok("init")
	f.ok("encrypt-existing", "--column", "customers.secret")
	f.ok("encrypt-existing", "--column", "customers.secret", "-o", "json")
	var v1, v2 string
	require.NoError(t, db.Raw(`SELECT secret FROM customers WHERE id = 1`).Scan(&v1).Error)
	require.NoError(t, db.Raw(`SELECT secret FROM customers WHERE id = 2`).Scan(&v2).Error)
	require.NoError(t, db.Exec(`UPDATE customers SET secret = ? WHERE id = 1`, v2).Error)
	require.NoError(t, db.Exec(`UPDATE customers SET secret = ? WHERE id = 2`, v1).Error)
	r := f.code(ExitIntegrity, "keys", "census")
	assert.Contains(t, r.stdout, "authentication=2")
	r = f.code(ExitIntegrity, "keys", "census", "-o", "json")
	var c censusResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &c))
	assert.ElementsMatch(t, []string{"1", "2"}, c.Columns[0].FailedRows)
	f.code(ExitIntegrity, "reencrypt", "--column", "customers.secret", "--full")
	audit := readFile(t, filepath.Join(f.dir, "audit.jsonl"))
	assert.Contains(t, audit, `"event":"decrypt.failed"`)
	assert.Contains(t, audit, `"row":"1"`)
	for k, v := range secrets {
		canaries[k] = v
	}

	// 3. backup of a canary stream
	stream := strings.Repeat("CANARY-backup-stream-payload\n", 5000)
	canaries[900] = "CANARY-backup-stream-payload"
	r = f.runIn(stream, "backup", "encrypt", "--class", "high")
	require.Equal(t, 0, r.code, r.stderr)
	f.write("s.fcb", r.stdout)
	f.ok("backup", "verify", "--in", "s.fcb")
	f.ok("backup", "inspect", "--in", "s.fcb", "-o", "json")
	r = f.run("backup", "decrypt", "--in", "s.fcb")
	require.Equal(t, 0, r.code)
	require.Equal(t, stream, r.stdout)
	f.outputs[len(f.outputs)-2] = "" // decrypt's stdout is the data itself

	all := qs + f.everything() + audit
	require.NotEmpty(t, all)
	for _, v := range canaries {
		require.NotContains(t, all, v, "a plaintext reached the output")
	}
}
