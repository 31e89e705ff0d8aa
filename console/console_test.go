package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/console"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

type Patient struct {
	ID     uuid.UUID `gorm:"size:36"`
	Name   string    `fieldcrypt:"high"`
	SSN    string    `fieldcrypt:"critical,blindindex"`
	Email  string    `fieldcrypt:"high,deterministic"`
	Notes  *string   `fieldcrypt:"critical"`
	Age    int
	Legacy string `fieldcrypt:"moderate,migrate"`
}

func canary(i int, what string) string { return fmt.Sprintf("CANARY-%s-%d-c0ns0le", what, i) }

// setup writes three patients through gormcrypt and returns a console
// over the same database, recording into mem.
func setup(t *testing.T, d testsvc.Dialect, mem audit.Sink) (*console.Console, *gorm.DB, []Patient) {
	t.Helper()
	db := testsvc.Open(t, d)
	keys := envelopetest.New()
	sqlDB, err := db.DB()
	require.NoError(t, err)
	app, err := gorm.Open(db.Dialector, &gorm.Config{ConnPool: sqlDB, Logger: logger.Discard}) // the application's own *gorm.DB
	require.NoError(t, err)
	require.NoError(t, app.Use(gormcrypt.New(keys)))
	require.NoError(t, gormcrypt.AutoMigrate(app, &Patient{}))
	var ps []Patient
	for i := range 3 {
		note := canary(i, "note")
		p := Patient{ID: uuid.New(), Name: canary(i, "name"), SSN: canary(i, "ssn"), Email: canary(i, "email"), Notes: &note, Age: 30 + i}
		require.NoError(t, app.Create(&p).Error)
		ps = append(ps, p)
	}
	fields, err := gormcrypt.Fields(app, &Patient{})
	require.NoError(t, err)
	c, err := console.NewGorm(db, console.Config{Keys: keys, Audit: mem, Columns: console.FromFields("id", fields...)})
	require.NoError(t, err)
	return c, db, ps
}

func noCanary(t *testing.T, what string, v any) {
	t.Helper()
	var b bytes.Buffer
	switch x := v.(type) {
	case *console.Result:
		require.NoError(t, x.WriteText(&b))
		j, err := json.Marshal(x)
		require.NoError(t, err)
		b.Write(j)
	default:
		fmt.Fprintf(&b, "%+v", x)
	}
	assert.NotContains(t, b.String(), "c0ns0le", "%s shows content", what)
}

func TestShow(t *testing.T) {
	for _, d := range testsvc.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			mem := &audit.Memory{}
			c, _, ps := setup(t, d, mem)
			ctx := audit.WithActor(context.Background(), audit.Person("ops:ann"))
			res, err := c.Show(ctx, console.Query{Table: "patients"})
			require.NoError(t, err)
			require.Len(t, res.Rows, 3)
			noCanary(t, "show", res)
			cell := func(r console.Row, col string) console.Cell {
				for _, c := range r.Cells {
					if c.Column == col {
						return c
					}
				}
				t.Fatalf("no column %s", col)
				return console.Cell{}
			}
			r := res.Rows[0]
			ssn := cell(r, "ssn")
			require.NotNil(t, ssn.Meta)
			assert.Equal(t, console.Meta{Class: "critical", KEKVersion: 1, Size: len(ps[0].SSN), RowBound: true}, *ssn.Meta)
			assert.Equal(t, fmt.Sprintf("[critical v1, %d B, row-bound]", len(ps[0].SSN)), ssn.String())
			assert.True(t, cell(r, "email").Meta.Deterministic)
			assert.True(t, cell(r, "ssn_bidx").Meta.BlindIndex)
			assert.Equal(t, "high", cell(r, "name").Meta.Class)
			assert.NotEmpty(t, cell(r, "age").Value)
			assert.Nil(t, cell(r, "age").Meta)
			assert.True(t, cell(r, "legacy").Null || cell(r, "legacy").Meta != nil)

			// Equality search through the blind index and on a deterministic column.
			for _, cond := range []console.Condition{{Column: "ssn", Value: ps[1].SSN}, {Column: "email", Value: ps[1].Email}, {Column: "id", Value: ps[1].ID.String()}} {
				res, err = c.Show(ctx, console.Query{Table: "patients", Where: &cond})
				require.NoError(t, err, cond.Column)
				require.Len(t, res.Rows, 1, cond.Column)
				assert.Equal(t, ps[1].ID.String(), cell(res.Rows[0], "id").Value)
			}
			_, err = c.Show(ctx, console.Query{Table: "patients", Where: &console.Condition{Column: "name", Value: ps[1].Name}})
			require.ErrorIs(t, err, console.ErrNotSearchable)
			noCanary(t, "error", err)
			res, err = c.Show(ctx, console.Query{Table: "patients", Limit: 2})
			require.NoError(t, err)
			assert.Len(t, res.Rows, 2)
			for _, bad := range []console.Query{{Table: "patients; DROP TABLE x"}, {Table: "patients", Limit: -1}, {Table: "patients", Limit: 5000},
				{Table: "patients", Where: &console.Condition{Column: "1=1 OR id", Value: "x"}}} {
				_, err = c.Show(ctx, bad)
				require.ErrorIs(t, err, console.ErrInvalidQuery, "%+v", bad)
			}
			var shows int
			for _, e := range mem.Events() {
				require.NotEqual(t, audit.DecryptAccess, e.Type, "showing decrypts nothing")
				noCanary(t, "event", e)
				if e.Type == audit.ConsoleShow {
					shows++
					assert.Equal(t, "ops:ann", e.Actor)
				}
			}
			assert.Equal(t, 5, shows)
		})
	}
}

func TestReveal(t *testing.T) {
	for _, d := range testsvc.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			mem := &audit.Memory{}
			c, db, ps := setup(t, d, mem)
			ctx := audit.WithActor(context.Background(), audit.Person("ops:ann"))
			q := console.Query{Table: "patients", Where: &console.Condition{Column: "ssn", Value: ps[2].SSN}}

			_, err := c.Reveal(ctx, q, []string{"ssn", "notes"}, " ")
			require.ErrorIs(t, err, audit.ErrPurposeRequired)
			evs := mem.Events()
			require.Len(t, evs, 2, "one refusal per column, nothing read")
			assert.Equal(t, audit.DecryptRefused, evs[0].Type)

			_, err = c.Reveal(ctx, q, []string{"age"}, "ticket 9")
			require.ErrorIs(t, err, console.ErrNotEncrypted)

			res, err := c.Reveal(ctx, q, []string{"ssn", "notes"}, "ticket 4711")
			require.NoError(t, err)
			require.Len(t, res.Rows, 1)
			assert.Equal(t, 2, res.Revealed)
			var got []string
			for _, cell := range res.Rows[0].Cells {
				if cell.Revealed {
					got = append(got, cell.Value)
				}
			}
			assert.ElementsMatch(t, []string{ps[2].SSN, *ps[2].Notes}, got)
			var access []audit.Event
			for _, e := range mem.Events() {
				noCanary(t, "event", e)
				if e.Type == audit.DecryptAccess {
					access = append(access, e)
				}
			}
			require.Len(t, access, 2, "one event per value revealed")
			for _, e := range access {
				assert.Equal(t, "ops:ann", e.Actor)
				assert.Equal(t, audit.KindPerson, e.ActorKind)
				assert.Equal(t, "ticket 4711", e.Purpose)
				assert.Equal(t, ps[2].ID.String(), e.Row)
				assert.Equal(t, "critical", e.Class)
				assert.Equal(t, uint32(1), e.KEKVersion)
			}

			// Two rows' ciphertexts swapped: the reveal fails, names the row,
			// shows no value and records decrypt.failed.
			var a, b string
			require.NoError(t, db.Raw("SELECT ssn FROM patients WHERE id = ?", ps[0].ID.String()).Row().Scan(&a))
			require.NoError(t, db.Raw("SELECT ssn FROM patients WHERE id = ?", ps[1].ID.String()).Row().Scan(&b))
			require.NoError(t, db.Exec("UPDATE patients SET ssn = ? WHERE id = ?", b, ps[0].ID.String()).Error)
			res, err = c.Reveal(ctx, console.Query{Table: "patients"}, []string{"ssn"}, "ticket 4712")
			require.ErrorIs(t, err, envelope.ErrAuthentication)
			assert.Contains(t, err.Error(), ps[0].ID.String())
			noCanary(t, "error", err)
			assert.Equal(t, 1, res.Failed)
			assert.Equal(t, 2, res.Revealed)
			var failed int
			for _, e := range mem.Events() {
				if e.Type == audit.DecryptFailed {
					failed++
					assert.Equal(t, ps[0].ID.String(), e.Row)
				}
			}
			assert.Equal(t, 1, failed)
		})
	}
}

// brokenSink cannot record.
type brokenSink struct{ audit.Memory }

func (*brokenSink) Err() error { return errors.New("disk full") }

func TestRevealNeedsAnAuditLog(t *testing.T) {
	c, _, _ := setup(t, testsvc.SQLite, &brokenSink{})
	_, err := c.Reveal(context.Background(), console.Query{Table: "patients"}, []string{"ssn"}, "ticket 1")
	require.ErrorIs(t, err, console.ErrAuditUnavailable)
	c2, _, _ := setup(t, testsvc.SQLite, nil)
	_, err = c2.Reveal(context.Background(), console.Query{Table: "patients"}, []string{"ssn"}, "ticket 1")
	require.ErrorIs(t, err, console.ErrAuditUnavailable)
}

func TestLegacyPlaintextIsNotShown(t *testing.T) {
	c, db, ps := setup(t, testsvc.SQLite, &audit.Memory{})
	require.NoError(t, db.Exec("UPDATE patients SET legacy = ? WHERE id = ?", canary(0, "legacy"), ps[0].ID.String()).Error)
	res, err := c.Show(context.Background(), console.Query{Table: "patients"})
	require.NoError(t, err)
	noCanary(t, "legacy", res)
	var text bytes.Buffer
	require.NoError(t, res.WriteText(&text))
	assert.Contains(t, text.String(), "[not a ciphertext, ")
}
