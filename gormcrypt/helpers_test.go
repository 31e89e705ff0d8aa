package gormcrypt_test

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
)

type Address struct {
	Street string `json:"street"`
	City   string `json:"city"`
}

// Patient has a client-generated UUID key: its values are row-bound.
type Patient struct {
	ID       uuid.UUID `gorm:"size:36"`
	Name     string    `fieldcrypt:"high"`
	SSN      string    `fieldcrypt:"critical,blindindex,unique"`
	Email    string    `fieldcrypt:"high,deterministic"`
	Notes    *string   `fieldcrypt:"critical"`
	Photo    []byte    `fieldcrypt:"moderate"`
	Born     time.Time `fieldcrypt:"high"`
	Visits   int       `fieldcrypt:"low"`
	Address  Address   `fieldcrypt:"high" gorm:"type:text"`
	Tags     []string  `fieldcrypt:"low" gorm:"type:text"`
	Age      int
	DoctorID *uint
	Doctor   *Doctor
	Records  []Record
}

func (p *Patient) BeforeCreate(*gorm.DB) error {
	if p.ID == uuid.Nil {
		p.ID = uuid.New()
	}
	return nil
}

// Doctor has an auto-increment key: values written on Create are not
// row-bound, values written on update are.
type Doctor struct {
	ID      uint
	Name    string `fieldcrypt:"high"`
	License string `fieldcrypt:"high,blindindex=size:8"`
}

// Record belongs to a patient (for Preload).
type Record struct {
	ID        uint
	PatientID uuid.UUID `gorm:"size:36"`
	Text      string    `fieldcrypt:"critical"`
}

func ptr[T any](v T) *T { return &v }

// fresh returns a *gorm.DB of its own on raw's connection pool.
// testsvc opens every database with one shared *gorm.Config, so plugins,
// callbacks and the schema cache would leak between dialects.
func fresh(t testing.TB, raw *gorm.DB, cfg *gorm.Config) *gorm.DB {
	t.Helper()
	sqlDB, err := raw.DB()
	require.NoError(t, err)
	var d gorm.Dialector
	switch raw.Dialector.Name() {
	case "sqlite":
		d = &sqlite.Dialector{Conn: sqlDB}
	case "postgres":
		d = postgres.New(postgres.Config{Conn: sqlDB})
	case "mysql":
		d = mysql.New(mysql.Config{Conn: sqlDB})
	default:
		t.Fatalf("unknown dialect %s", raw.Dialector.Name())
	}
	if cfg == nil {
		cfg = &gorm.Config{Logger: logger.Discard}
	}
	db, err := gorm.Open(d, cfg)
	require.NoError(t, err)
	return db
}

// open returns db with the plugin and the models migrated.
func open(t *testing.T, raw *gorm.DB) (*gorm.DB, *envelopetest.Keys) {
	t.Helper()
	db := fresh(t, raw, nil)
	keys := envelopetest.New()
	require.NoError(t, db.Use(gormcrypt.New(keys)))
	require.NoError(t, gormcrypt.AutoMigrate(db, &Doctor{}, &Patient{}, &Record{}))
	return db, keys
}

func samplePatient(tag string) Patient {
	return Patient{
		ID:      uuid.New(),
		Name:    "Ada " + tag,
		SSN:     "123-45-" + tag,
		Email:   "ada" + tag + "@example.com",
		Notes:   ptr("allergic to " + tag),
		Photo:   []byte("photo-" + tag),
		Born:    time.Date(1815, 12, 10, 8, 30, 0, 0, time.UTC),
		Visits:  7,
		Address: Address{Street: "St James " + tag, City: "London"},
		Tags:    []string{"a", tag},
		Age:     36,
	}
}

// rebind turns ? placeholders into $n for PostgreSQL.
func rebind(db *gorm.DB, q string) string {
	if db.Dialector.Name() != "postgres" {
		return q
	}
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// rawExec runs SQL on the connection pool, bypassing GORM and the plugin.
func rawExec(t *testing.T, db *gorm.DB, q string, args ...any) {
	t.Helper()
	sqlDB, err := db.DB()
	require.NoError(t, err)
	_, err = sqlDB.Exec(rebind(db, q), args...)
	require.NoError(t, err)
}

// rawColumn returns the stored text of column for the row with key id.
func rawColumn(t *testing.T, db *gorm.DB, table, column string, id any) sql.NullString {
	t.Helper()
	sqlDB, err := db.DB()
	require.NoError(t, err)
	var s sql.NullString
	require.NoError(t, sqlDB.QueryRow(rebind(db, "SELECT "+column+" FROM "+table+" WHERE id = ?"), fmt.Sprint(id)).Scan(&s))
	return s
}

// rawRows returns every stored value of the given columns of table.
func rawRows(t *testing.T, db *gorm.DB, table string, columns ...string) []map[string]sql.NullString {
	t.Helper()
	sqlDB, err := db.DB()
	require.NoError(t, err)
	rows, err := sqlDB.Query("SELECT " + strings.Join(columns, ", ") + " FROM " + table)
	require.NoError(t, err)
	defer rows.Close()
	var out []map[string]sql.NullString
	for rows.Next() {
		vals := make([]sql.NullString, len(columns))
		ptrs := make([]any, len(columns))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		m := map[string]sql.NullString{}
		for i, c := range columns {
			m[c] = vals[i]
		}
		out = append(out, m)
	}
	require.NoError(t, rows.Err())
	return out
}

var patientEncrypted = []string{"name", "ssn", "email", "notes", "photo", "born", "visits", "address", "tags"}

// requireAllEncrypted checks that every stored value of the encrypted
// columns of patients is NULL or a ciphertext, and that the blind index is
// set exactly when ssn is.
func requireAllEncrypted(t *testing.T, db *gorm.DB) {
	t.Helper()
	for _, row := range rawRows(t, db, "patients", append(patientEncrypted, "ssn_bidx")...) {
		for _, c := range patientEncrypted {
			if row[c].Valid {
				require.Truef(t, strings.HasPrefix(row[c].String, "fc1:"), "column %s stored in clear", c)
			}
		}
		require.Equal(t, row["ssn"].Valid, row["ssn_bidx"].Valid, "blind index out of step with ssn")
		if row["ssn_bidx"].Valid {
			require.Len(t, row["ssn_bidx"].String, 32)
		}
	}
}

func requireSamePatient(t *testing.T, want, got Patient) {
	t.Helper()
	require.Equal(t, want.ID, got.ID)
	require.Equal(t, want.Name, got.Name)
	require.Equal(t, want.SSN, got.SSN)
	require.Equal(t, want.Email, got.Email)
	require.Equal(t, want.Notes, got.Notes)
	require.Equal(t, want.Photo, got.Photo)
	require.True(t, want.Born.Equal(got.Born), "born %v != %v", want.Born, got.Born)
	require.Equal(t, want.Visits, got.Visits)
	require.Equal(t, want.Address, got.Address)
	require.Equal(t, want.Tags, got.Tags)
	require.Equal(t, want.Age, got.Age)
}
