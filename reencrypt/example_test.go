package reencrypt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// Example migrates a plaintext column to ciphertext, rotates the KEK and
// rewraps every value onto the new primary, with a census before and after.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "reencrypt-example")
	defer os.RemoveAll(dir)
	db, err := gorm.Open(sqlite.Open(filepath.Join(dir, "app.db")), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	db.Exec("CREATE TABLE patients (id INTEGER PRIMARY KEY, ssn TEXT)")
	for id := 1; id <= 5; id++ {
		db.Exec("INSERT INTO patients (id, ssn) VALUES (?, ?)", id, fmt.Sprintf("078-05-112%d", id))
	}
	db.Exec("INSERT INTO patients (id, ssn) VALUES (6, NULL)")

	keys := envelopetest.New() // in production: a *keyring.Keyring
	env := envelope.New(keys)
	col := reencrypt.Column{Table: "patients", PK: "id", Column: "ssn", Class: envelope.Critical, Text: true, RowBound: true}

	// fieldcrypt encrypt-existing
	sum, err := reencrypt.Run(ctx, db, env, col, reencrypt.Options{Mode: reencrypt.EncryptExisting})
	if err != nil {
		panic(err)
	}
	fmt.Printf("encrypt-existing: scanned %d, encrypted %d, NULL %d\n", sum.Scanned, sum.Changed, sum.Nulls)

	// The KEK rotates; fieldcrypt reencrypt moves every value onto it.
	keys.Rotate(envelope.Scope{Class: envelope.Critical})
	sum, err = reencrypt.Run(ctx, db, env, col, reencrypt.Options{Workers: 2})
	if err != nil {
		panic(err)
	}
	fmt.Printf("reencrypt: rewrapped %d, already current %d, finished %v\n", sum.Changed, sum.Current, sum.JobFinished)

	// fieldcrypt keys census
	census, err := reencrypt.Census(ctx, db, env, col, reencrypt.CensusOptions{})
	if err != nil {
		panic(err)
	}
	for _, k := range census.Keys {
		fmt.Printf("census: %s v%d: %d values\n", k.Class, k.KEKVersion, k.Count)
	}
	fmt.Printf("census: %d NULL, %d plaintext, %d undecryptable\n", census.Nulls, census.Plaintext, census.Undecryptable)
	// Output:
	// encrypt-existing: scanned 6, encrypted 5, NULL 1
	// reencrypt: rewrapped 5, already current 0, finished true
	// census: critical v2: 5 values
	// census: 1 NULL, 0 plaintext, 0 undecryptable
}

// What encrypt-existing prints once a migration is done: the command that
// removes the old plaintexts from the table's files.
func ExampleAfterMigration() {
	c := reencrypt.AfterMigration("postgres", "patients")
	fmt.Println(c.Command)
	fmt.Println(reencrypt.AfterMigration("mysql", "patients").Command)
	fmt.Println(reencrypt.AfterMigration("sqlite", "patients").Command)
	// Output:
	// VACUUM FULL patients; CHECKPOINT;
	// OPTIMIZE TABLE patients;
	// VACUUM; PRAGMA wal_checkpoint(TRUNCATE);
}
