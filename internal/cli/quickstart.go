package cli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/ops"
)

// QuickstartPatient is the sample model quickstart writes through the GORM
// plugin: a client-generated UUID key (so values are bound to their row),
// a randomized field with a blind index (SSN), a deterministic one (Email),
// and an optional one (Notes).
type QuickstartPatient struct {
	ID    uuid.UUID `gorm:"size:36"`
	Name  string    `fieldcrypt:"high"`
	SSN   string    `fieldcrypt:"critical,blindindex,unique"`
	Email string    `fieldcrypt:"high,deterministic"`
	Notes *string   `fieldcrypt:"critical"`
	Age   int       // not sensitive: stored in clear
}

// TableName is "patients".
func (QuickstartPatient) TableName() string { return "patients" }

// BeforeCreate assigns the key before the write, so values are row-bound.
func (p *QuickstartPatient) BeforeCreate(*gorm.DB) error {
	if p.ID == uuid.Nil {
		p.ID = uuid.New()
	}
	return nil
}

func strp(s string) *string { return &s }

// quickstartPatients are the (fictitious) sample records. quickstart never
// prints them: the tests check that none of them reaches any output.
var quickstartPatients = []QuickstartPatient{
	{Name: "Ada Quickstart-Lovelace", SSN: "078-05-1120", Email: "ada.qs@example.org", Notes: strp("qs-note: allergic to penicillin"), Age: 36},
	{Name: "Alan Quickstart-Turing", SSN: "219-09-9999", Email: "alan.qs@example.org", Notes: strp("qs-note: follow-up in March"), Age: 41},
	{Name: "Grace Quickstart-Hopper", SSN: "457-55-5462", Email: "grace.qs@example.org", Age: 85},
	{Name: "Edsger Quickstart-Dijkstra", SSN: "123-45-6789", Email: "edsger.qs@example.org", Notes: strp("qs-note: prefers morning visits"), Age: 72},
	{Name: "Barbara Quickstart-Liskov", SSN: "987-65-4320", Email: "barbara.qs@example.org", Age: 86},
}

var quickstartColumns = []config.Column{
	{Table: "patients", Column: "name", PK: "id", Class: "high", Mode: "randomized", RowBound: true, Encoding: "text"},
	{Table: "patients", Column: "ssn", PK: "id", Class: "critical", Mode: "randomized", RowBound: true, Encoding: "text", BlindIndex: "ssn_bidx"},
	{Table: "patients", Column: "email", PK: "id", Class: "high", Mode: "deterministic", Encoding: "text"},
	{Table: "patients", Column: "notes", PK: "id", Class: "critical", Mode: "randomized", RowBound: true, Encoding: "text"},
}

type quickstartResult struct {
	Dir             string               `json:"dir"`
	ConfigFile      string               `json:"config_file"`
	Database        string               `json:"database"`
	PatientsWritten int                  `json:"patients_written"`
	RawRow          map[string]string    `json:"raw_row"` // ciphertexts as stored (truncated)
	ReadBackOK      bool                 `json:"read_back_ok"`
	BlindIndexHit   bool                 `json:"blind_index_lookup_ok"`
	Rotated         []keyring.KEKInfo    `json:"rotated"`
	Reencrypt       *ops.ReencryptResult `json:"reencrypt"`
	Before          []ops.VersionCount   `json:"versions_before"`
	After           []ops.VersionCount   `json:"versions_after"`
	AfterPlaintext  int64                `json:"plaintext_after"`
	AfterFailed     int64                `json:"failed_after"`
	KMS             map[string]uint64    `json:"kms"`
	DurationS       float64              `json:"duration_s"`

	Access *quickstartAccessResult `json:"access"` // the reveal and the chained log
}

func (a *app) quickstartCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "See fieldcrypt work end to end in seconds, with zero setup",
		Long: `quickstart needs nothing but this binary. In a new directory (--dir, default a
new temporary directory) it creates local master keys, a SQLite database and
a config file; writes sample patient records through the GORM plugin
(gormcrypt); shows a raw row read with plain SQL (only ciphertext); reads the
records back and finds one by SSN through its blind index; rotates the KEKs;
re-encrypts (rewraps) the data; runs a census; and prints what happened,
KMS calls included. The directory is kept so you can try other commands on it.

Sample values are never printed.`,
		Example: `  go run ./cmd/fieldcrypt quickstart
  fieldcrypt quickstart --dir ./fieldcrypt-quickstart
  fieldcrypt quickstart -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			start := time.Now()
			if dir == "" {
				d, err := os.MkdirTemp("", "fieldcrypt-quickstart-")
				if err != nil {
					return err
				}
				dir = d
			} else {
				dir = config.ResolvePath(a.io.Dir, dir)
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return err
				}
			}
			cfgPath := filepath.Join(dir, config.DefaultFile)
			if _, err := os.Stat(cfgPath); err == nil {
				return usageErrorf("%s already holds a fieldcrypt setup (%s): pick another --dir", dir, cfgPath)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			return a.quickstart(ctx, dir, cfgPath, start)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to create everything in (default: a new temporary directory)")
	return cmd
}

func (a *app) quickstart(ctx context.Context, dir, cfgPath string, start time.Time) error {
	text := !a.jsonOut()
	w := a.io.Stdout
	say := func(format string, args ...any) {
		if text {
			fmt.Fprintf(w, format+"\n", args...)
		}
	}
	res := quickstartResult{Dir: dir, ConfigFile: cfgPath, RawRow: map[string]string{}}

	// 1. Keys, database, config.
	if _, err := ops.Bootstrap(cfgPath, "sqlite://quickstart.db"); err != nil {
		return err
	}
	if err := appendColumns(cfgPath, quickstartColumns); err != nil {
		return err
	}
	if err := appendAuditChain(dir, cfgPath); err != nil {
		return err
	}
	// Everything below reads this setup, whatever the environment says.
	a.configPath, a.database, a.keyringID, a.tenant, a.masterKeys, a.cfg = cfgPath, "", "", "", nil, nil
	a.io.Getenv = func(string) string { return "" }
	a.sink = nil
	op, err := a.operator(ctx, true)
	if err != nil {
		return err
	}
	kr, db := op.Keyring, op.DB
	res.Database = op.DSN.Redacted
	if _, err := op.Setup(ctx); err != nil {
		return err
	}
	say("1. Created in %s:", dir)
	say("     .fieldcrypt/master-{critical,high,moderate,low}.key   local master keys (mode 0600)")
	say("     quickstart.db                                         SQLite database, keyring tables, KEK v1 per class")
	say("     fieldcrypt.yaml                                       config: classes -> master keys, encrypted columns")

	// 2. Write sample records through gormcrypt.
	app := db.Session(&gorm.Session{NewDB: true, Context: ctx})
	if err := app.Use(gormcrypt.New(kr)); err != nil {
		return fmt.Errorf("register gormcrypt: %w", err)
	}
	if err := gormcrypt.AutoMigrate(app, &QuickstartPatient{}); err != nil {
		return fmt.Errorf("migrate patients: %w", err)
	}
	patients := make([]QuickstartPatient, len(quickstartPatients))
	copy(patients, quickstartPatients)
	for i := range patients {
		if err := app.WithContext(ctx).Create(&patients[i]).Error; err != nil {
			return fmt.Errorf("write patient %d: %w", i+1, err)
		}
	}
	res.PatientsWritten = len(patients)
	say("2. Wrote %d patients through the GORM plugin (name, ssn, email, notes encrypted; age in clear).", len(patients))

	// 3. The raw database holds only ciphertext.
	raw, err := db.DB()
	if err != nil {
		return err
	}
	if err := rawRow(ctx, raw, patients[0].ID.String(), res.RawRow); err != nil {
		return err
	}
	say("3. One row as stored, read with plain SQL (no key):")
	for _, c := range []string{"id", "name", "ssn", "ssn_bidx", "email", "notes", "age"} {
		if v, ok := res.RawRow[c]; ok {
			say("     %-9s %s", c, v)
		}
	}

	// 4. Read back and search.
	var back []QuickstartPatient
	if err := app.WithContext(ctx).Order("id").Find(&back).Error; err != nil {
		return fmt.Errorf("read patients back: %w", err)
	}
	res.ReadBackOK = samePatients(patients, back)
	var found QuickstartPatient
	if err := app.WithContext(ctx).Where(&QuickstartPatient{SSN: patients[2].SSN}).First(&found).Error; err != nil {
		return fmt.Errorf("find patient by SSN: %w", err)
	}
	res.BlindIndexHit = found.ID == patients[2].ID
	say("4. Read back through the plugin: %d patients decrypt to what was written: %v; lookup by SSN through the blind index: %v.",
		len(back), res.ReadBackOK, res.BlindIndexHit)
	if !res.ReadBackOK || !res.BlindIndexHit {
		return fmt.Errorf("%w: quickstart read-back check failed", errIntegrity)
	}

	// 5. Census before rotation.
	before, err := op.Census(ctx, ops.CensusOptions{Verify: true})
	if err != nil {
		return err
	}
	res.Before = before.Versions
	say("5. Census: values per KEK version: %s", versionsLine(before.Versions))

	// 6. Rotate the KEKs of the classes in use.
	if res.Rotated, err = op.Rotate(ctx, []envelope.Class{envelope.Critical, envelope.High}); err != nil {
		return err
	}
	say("6. Rotated: critical and high now seal new values under v2; v1 stays decrypt-only.")

	// 7. Re-encrypt (rewrap): headers only, plaintext never computed.
	if res.Reencrypt, err = op.Reencrypt(ctx, op.Config.Columns, ops.ReencryptOptions{}); err != nil {
		return err
	}
	say("7. Re-encrypted (rewrap: new wrapped data key in each header, data untouched): %d values moved to v2;", res.Reencrypt.Changed)
	say("   deterministic values (email) follow the search key, which a rotation does not change.")

	// 8. Census after.
	after, err := op.Census(ctx, ops.CensusOptions{Verify: true})
	if err != nil {
		return err
	}
	res.After, res.AfterPlaintext, res.AfterFailed = after.Versions, after.Plaintext, after.TotalFailed()
	say("8. Census: values per KEK version: %s; plaintext: %d; failing to open: %d.", versionsLine(after.Versions), res.AfterPlaintext, res.AfterFailed)

	// 9-10. Accountable access: a reveal with a reason, recorded in the chained log.
	if res.Access, err = a.quickstartAccess(ctx, db, kr, patients[0].ID.String()); err != nil {
		return err
	}
	say("9. Revealed patient 1's SSN at the console with reason %q (not printed here): one decrypt.access event names actor, reason, row, class, key version.", quickstartReason)
	say("10. Audit chain verified: %d records, each MAC'd and linked to the last, intact: %v; a checkpoint in the database vouches for the newest.", res.Access.Records, res.Access.Intact)

	st := kr.Stats()
	res.KMS = map[string]uint64{"wrap_calls": st.KMSWrapCalls, "unwrap_calls": st.KMSUnwrapCalls, "cache_hits": st.CacheHits, "cache_misses": st.CacheMisses}
	res.DurationS = round2(time.Since(start).Seconds())
	if !text {
		return a.emit(res, nil)
	}
	say("")
	say("Summary: %d values sealed, 2 KEKs rotated, %d values rewrapped: %d KMS calls in total",
		before.Encrypted, res.Reencrypt.Changed, st.KMSCalls())
	say("         (%d wraps, one per KEK and class key created; %d unwraps: keys stay cached, KMS calls scale with keys, not rows).",
		st.KMSWrapCalls, st.KMSUnwrapCalls)
	say("         KEK cache: %d hits, %d misses. Took %.2fs.", st.CacheHits, st.CacheMisses, res.DurationS)
	say("")
	say("Try next (the setup is kept; from the repository, 'go run ./cmd/fieldcrypt' for 'fieldcrypt'):")
	say("  export FIELDCRYPT_CONFIG=%s", cfgPath)
	say("  fieldcrypt keys list")
	say("  fieldcrypt keys census")
	say("  fieldcrypt reencrypt --all --full --dry-run")
	say("  fieldcrypt show patients --limit 3 --reveal notes --reason \"ticket 1\"")
	say("  fieldcrypt audit report")
	say("  fieldcrypt backup encrypt --class critical --in %s --out %s", filepath.Join(dir, "quickstart.db"), filepath.Join(dir, "quickstart.db.fcb"))
	return nil
}

func samePatients(want, got []QuickstartPatient) bool {
	if len(want) != len(got) {
		return false
	}
	byID := map[uuid.UUID]QuickstartPatient{}
	for _, p := range want {
		byID[p.ID] = p
	}
	for _, g := range got {
		w, ok := byID[g.ID]
		if !ok || w.Name != g.Name || w.SSN != g.SSN || w.Email != g.Email || w.Age != g.Age || (w.Notes == nil) != (g.Notes == nil) ||
			(w.Notes != nil && *w.Notes != *g.Notes) {
			return false
		}
	}
	return true
}

// rawRow reads one patient with plain SQL, bypassing the plugin, and
// keeps each column truncated for display. Encrypted columns hold only
// "fc1:" ciphertexts; the blind index is a keyed hash.
func rawRow(ctx context.Context, db *sql.DB, id string, out map[string]string) error {
	rows, err := db.QueryContext(ctx, `SELECT id, name, ssn, ssn_bidx, email, notes, age FROM patients WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("read raw row: %w", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		return fmt.Errorf("read raw row: no row")
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return fmt.Errorf("read raw row: %w", err)
	}
	encrypted := map[string]bool{"name": true, "ssn": true, "email": true, "notes": true}
	for i, c := range cols {
		v := vals[i]
		switch {
		case !v.Valid:
			out[c] = "NULL"
		case encrypted[c] && !envelope.IsCiphertext([]byte(v.String)):
			return fmt.Errorf("%w: column %s holds a value that is not a ciphertext", errIntegrity, c)
		case len(v.String) > 60:
			out[c] = v.String[:57] + "..."
		default:
			out[c] = v.String
		}
	}
	return rows.Err()
}

func versionsLine(vs []ops.VersionCount) string {
	if len(vs) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(vs))
	for _, v := range vs {
		s := fmt.Sprintf("%s=%d", v.Name(), v.Count)
		if v.Suite == "deterministic" {
			s += " (deterministic)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// appendColumns adds a columns: section to a config file bootstrap wrote.
func appendColumns(path string, cols []config.Column) error {
	var b strings.Builder
	b.WriteString("# Encrypted columns: census, reencrypt and encrypt-existing work on these.\ncolumns:\n")
	for _, c := range cols {
		fmt.Fprintf(&b, "  - {table: %s, column: %s, pk: %s, class: %s, mode: %s, row_bound: %v, encoding: %s%s}\n",
			c.Table, c.Column, c.PK, c.Class, c.Mode, c.RowBound, c.Encoding, blindIndexYAML(c))
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
