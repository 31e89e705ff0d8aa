package gormcrypt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

type benchPlain struct {
	ID    uuid.UUID `gorm:"size:36"`
	Name  string
	SSN   string
	Email string
}

// benchEncrypted is benchPlain with its three fields encrypted
// (randomized): the cost of encryption alone.
type benchEncrypted struct {
	ID    uuid.UUID `gorm:"size:36"`
	Name  string    `fieldcrypt:"high"`
	SSN   string    `fieldcrypt:"critical"`
	Email string    `fieldcrypt:"high"`
}

// benchPlainIndexed is benchPlain searchable by SSN (indexed).
type benchPlainIndexed struct {
	ID    uuid.UUID `gorm:"size:36"`
	Name  string
	SSN   string `gorm:"index"`
	Email string
}

// benchSearchable is the model: SSN searchable through an indexed
// blind index, Email through deterministic encryption.
type benchSearchable struct {
	ID    uuid.UUID `gorm:"size:36"`
	Name  string    `fieldcrypt:"high"`
	SSN   string    `fieldcrypt:"critical,blindindex"`
	Email string    `fieldcrypt:"high,deterministic"`
}

// benchPlainSerial and benchSerial have a database-generated key: the
// encrypted model's values are sealed again, bound to the key, after the
// INSERT (one UPDATE per row, in the INSERT's transaction).
type benchPlainSerial struct {
	ID    uint
	Name  string
	SSN   string
	Email string
}

type benchSerial struct {
	ID    uint
	Name  string `fieldcrypt:"high"`
	SSN   string `fieldcrypt:"critical"`
	Email string `fieldcrypt:"high"`
}

// benchSerialUnbound opts out of the re-seal.
type benchSerialUnbound struct {
	ID    uint
	Name  string `fieldcrypt:"high,unbound"`
	SSN   string `fieldcrypt:"critical,unbound"`
	Email string `fieldcrypt:"high,unbound"`
}

// createFirstSerial is createFirst for a database-generated key.
func createFirstSerial[T any](b *testing.B, db *gorm.DB, mk func() *T, id func(*T) uint) {
	b.ReportAllocs()
	for b.Loop() {
		v := mk()
		if err := db.Create(v).Error; err != nil {
			b.Fatal(err)
		}
		var got T
		if err := db.First(&got, id(v)).Error; err != nil {
			b.Fatal(err)
		}
	}
}

// createFirst runs one Create and one First by primary key per iteration.
func createFirst[T any](b *testing.B, db *gorm.DB, mk func(id uuid.UUID) *T) {
	b.ReportAllocs()
	for b.Loop() {
		id := uuid.New()
		if err := db.Create(mk(id)).Error; err != nil {
			b.Fatal(err)
		}
		var got T
		if err := db.First(&got, "id = ?", id).Error; err != nil {
			b.Fatal(err)
		}
	}
}

// benchDatabases are the databases the benchmarks compare on: SQLite in
// memory and PostgreSQL over loopback, each a *gorm.DB of its own.
var benchDatabases = []struct {
	name string
	open func(b *testing.B) *gorm.DB
}{
	{"sqlite", func(b *testing.B) *gorm.DB {
		db, err := gorm.Open(sqlite.Open("file::memory:"), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			b.Fatal(err)
		}
		sqlDB, _ := db.DB()
		sqlDB.SetMaxOpenConns(1) // one in-memory database
		b.Cleanup(func() { sqlDB.Close() })
		return db
	}},
	{"postgres", func(b *testing.B) *gorm.DB {
		return fresh(b, testsvc.Open(b, testsvc.Postgres), &gorm.Config{Logger: logger.Discard})
	}},
}

// BenchmarkCreateFirst measures one Create and one First by primary key of
// a model with three encrypted fields against the same model in clear, and
// of the searchable variant against the plain model with an index.
//
// Run it with a fixed iteration count (-benchtime 3000x) so every model ends
// with the same table size: SQLite's cost grows with the table.
func BenchmarkCreateFirst(b *testing.B) {
	for _, d := range benchDatabases {
		b.Run(d.name, func(b *testing.B) {
			db := d.open(b)
			if err := db.Use(gormcrypt.New(envelopetest.New())); err != nil {
				b.Fatal(err)
			}
			if err := gormcrypt.AutoMigrate(db, &benchPlain{}, &benchEncrypted{}, &benchPlainIndexed{}, &benchSearchable{},
				&benchPlainSerial{}, &benchSerial{}, &benchSerialUnbound{}); err != nil {
				b.Fatal(err)
			}
			const name, ssn, email = "Ada Lovelace", "123-45-6789", "ada@example.com"
			b.Run("plain", func(b *testing.B) {
				createFirst(b, db, func(id uuid.UUID) *benchPlain { return &benchPlain{id, name, ssn, email} })
			})
			b.Run("encrypted", func(b *testing.B) {
				createFirst(b, db, func(id uuid.UUID) *benchEncrypted { return &benchEncrypted{id, name, ssn, email} })
			})
			b.Run("plain-indexed", func(b *testing.B) {
				createFirst(b, db, func(id uuid.UUID) *benchPlainIndexed { return &benchPlainIndexed{id, name, ssn, email} })
			})
			b.Run("encrypted-searchable", func(b *testing.B) {
				createFirst(b, db, func(id uuid.UUID) *benchSearchable { return &benchSearchable{id, name, ssn, email} })
			})
			b.Run("serial-plain", func(b *testing.B) {
				createFirstSerial(b, db, func() *benchPlainSerial { return &benchPlainSerial{Name: name, SSN: ssn, Email: email} },
					func(v *benchPlainSerial) uint { return v.ID })
			})
			b.Run("serial-encrypted", func(b *testing.B) {
				createFirstSerial(b, db, func() *benchSerial { return &benchSerial{Name: name, SSN: ssn, Email: email} },
					func(v *benchSerial) uint { return v.ID })
			})
			b.Run("serial-encrypted-unbound", func(b *testing.B) {
				createFirstSerial(b, db, func() *benchSerialUnbound { return &benchSerialUnbound{Name: name, SSN: ssn, Email: email} },
					func(v *benchSerialUnbound) uint { return v.ID })
			})
		})
	}
}

// BenchmarkAuditChain is the cost of recording every decrypt in the
// hash-chained audit log (audit.Chain, default options: buffered, synced
// every 200ms) against no audit, on Create+First and on First alone of the
// three-field model, SQLite in memory and PostgreSQL in the same run. A
// First decrypts three values: three decrypt.access records, each with the
// actor and purpose of the read.
//
// The two variants alternate within each iteration (each with its own
// table and plugin on the same connection pool), so load on a shared
// machine falls on both alike; it reports each variant's ns per operation
// and their ratio (chain/none).
func BenchmarkAuditChain(b *testing.B) {
	ctx := audit.WithPurpose(audit.WithActor(context.Background(), audit.Person("support:jane")), "ticket 4711")
	for _, d := range benchDatabases {
		b.Run(d.name, func(b *testing.B) {
			raw := d.open(b)
			dir := b.TempDir()
			mk, err := localkms.Create(filepath.Join(dir, "audit.key"))
			if err != nil {
				b.Fatal(err)
			}
			chain, err := audit.OpenChain(context.Background(), audit.ChainOptions{Path: filepath.Join(dir, "audit.jsonl"), MasterKey: mk,
				Checkpoints: audit.FileCheckpoints{Path: filepath.Join(dir, "cps.jsonl")}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { chain.Close() })
			var dbs [2]*gorm.DB // none, chain
			for i, sink := range []audit.Sink{nil, chain} {
				db := fresh(b, raw, &gorm.Config{Logger: logger.Discard})
				p := gormcrypt.New(envelopetest.New())
				if sink != nil {
					p = p.WithAudit(sink)
				}
				if err := db.Use(p); err != nil {
					b.Fatal(err)
				}
				table := fmt.Sprintf("bench_audit_%d", i)
				db = db.Scopes(func(d *gorm.DB) *gorm.DB { return d.Table(table) })
				if err := gormcrypt.AutoMigrate(db, &benchEncrypted{}); err != nil {
					b.Fatal(err)
				}
				dbs[i] = db.WithContext(ctx)
			}
			const name, ssn, email = "Ada Lovelace", "123-45-6789", "ada@example.com"
			first := func(db *gorm.DB, id uuid.UUID) {
				var got benchEncrypted
				if err := db.First(&got, "id = ?", id).Error; err != nil {
					b.Fatal(err)
				}
			}
			create := func(db *gorm.DB, id uuid.UUID) {
				if err := db.Create(&benchEncrypted{id, name, ssn, email}).Error; err != nil {
					b.Fatal(err)
				}
			}
			alternate := func(b *testing.B, op func(db *gorm.DB, id uuid.UUID), ids func() uuid.UUID) {
				var spent [2]time.Duration
				for i := 0; b.Loop(); i++ {
					id := ids()
					for k := range 2 {
						v := (i + k) % 2 // alternate which variant goes first
						t0 := time.Now()
						op(dbs[v], id)
						spent[v] += time.Since(t0)
					}
				}
				n := float64(b.N)
				b.ReportMetric(float64(spent[0].Nanoseconds())/n, "none-ns/op")
				b.ReportMetric(float64(spent[1].Nanoseconds())/n, "chain-ns/op")
				b.ReportMetric(float64(spent[1])/float64(spent[0]), "ratio")
			}
			b.Run("create-first", func(b *testing.B) {
				alternate(b, func(db *gorm.DB, id uuid.UUID) { create(db, id); first(db, id) }, uuid.New)
			})
			// First alone: one row per variant, read again and again.
			id := uuid.New()
			for _, db := range dbs {
				create(db, id)
			}
			b.Run("first", func(b *testing.B) {
				alternate(b, first, func() uuid.UUID { return id })
			})
		})
	}
}
