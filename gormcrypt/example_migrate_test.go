package gormcrypt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// Account before and after: SSN was a plain column; now it is encrypted,
// searchable through its blind index and unique.
type Account struct {
	ID  uint
	SSN string `fieldcrypt:"critical,blindindex,unique,migrate"`
}

// Migrating an existing column from the model: the legacy rows are
// encrypted and indexed in one compare-and-swap each, so they are found by
// equality search afterwards.
func ExampleEncryptExisting() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "gormcrypt-migrate")
	defer os.RemoveAll(dir)
	db, err := gorm.Open(sqlite.Open(filepath.Join(dir, "app.db")), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	// The table as the application had it, with plaintext.
	db.Exec("CREATE TABLE accounts (id INTEGER PRIMARY KEY, ssn TEXT)")
	db.Exec("INSERT INTO accounts (id, ssn) VALUES (1, '078-05-1120'), (2, '219-09-9999')")

	if err := db.Use(gormcrypt.New(envelopetest.New())); err != nil {
		panic(err)
	}
	if err := gormcrypt.AutoMigrate(db, &Account{}); err != nil { // adds ssn_bidx
		panic(err)
	}
	sums, err := gormcrypt.EncryptExisting(ctx, db, &Account{}, reencrypt.Options{})
	if err != nil {
		panic(err)
	}
	fmt.Println("encrypted:", sums[0].Changed)

	var a Account
	db.Where(&Account{SSN: "219-09-9999"}).First(&a)
	fmt.Println("found by its blind index:", a.ID)
	fmt.Println("then:", reencrypt.AfterMigration(db.Dialector.Name(), "accounts").Command)
	// Output:
	// encrypted: 2
	// found by its blind index: 2
	// then: VACUUM; PRAGMA wal_checkpoint(TRUNCATE);
}
