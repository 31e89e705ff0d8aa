package gormcrypt_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
)

// Customer is the model of the example: a client-generated key, so every
// value is also bound to its row.
type Customer struct {
	ID    string
	Name  string  `fieldcrypt:"high"`
	SSN   string  `fieldcrypt:"critical,blindindex,unique"`
	Email string  `fieldcrypt:"high,deterministic"`
	Notes *string `fieldcrypt:"critical"`
}

func Example() {
	dir, _ := os.MkdirTemp("", "gormcrypt-example")
	defer os.RemoveAll(dir)
	db, err := gorm.Open(sqlite.Open(filepath.Join(dir, "app.db")), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	// In an application: gormcrypt.New(keyring) with a *keyring.Keyring.
	if err := db.Use(gormcrypt.New(envelopetest.New())); err != nil {
		panic(err)
	}
	if err := gormcrypt.AutoMigrate(db, &Customer{}); err != nil {
		panic(err)
	}

	c := Customer{ID: "c-1", Name: "Ada Lovelace", SSN: "123-45-6789", Email: "ada@example.com"}
	if err := db.Create(&c).Error; err != nil {
		panic(err)
	}
	fmt.Println("caller keeps the plaintext:", c.Name)

	// What the database holds, read around GORM (database/sql):
	sqlDB, _ := db.DB()
	var stored string
	sqlDB.QueryRow("SELECT name FROM customers WHERE id = ?", c.ID).Scan(&stored)
	fmt.Println("the database holds a ciphertext:", strings.HasPrefix(stored, "fc1:"))

	// Every GORM path decrypts, even a raw query scanned by hand.
	var name string
	db.Raw("SELECT name, id FROM customers WHERE id = ?", c.ID).Row().Scan(&name, new(string))
	fmt.Println("raw query through GORM:", name)

	var found Customer
	db.Where(&Customer{SSN: "123-45-6789"}).First(&found) // blind index lookup
	fmt.Println("found by SSN:", found.Name, found.Notes == nil)

	db.Where(&Customer{Email: "ada@example.com"}).First(&found) // deterministic lookup
	fmt.Println("found by email:", found.ID)

	// A ciphertext copied to another row does not decrypt.
	db.Create(&Customer{ID: "c-2", Name: "Charles Babbage", SSN: "987-65-4321", Email: "charles@example.com"})
	sqlDB.Exec("UPDATE customers SET name = ? WHERE id = 'c-2'", stored)
	var other Customer
	err = db.First(&other, "id = ?", "c-2").Error
	fmt.Println(err)
	// Output:
	// caller keeps the plaintext: Ada Lovelace
	// the database holds a ciphertext: true
	// raw query through GORM: Ada Lovelace
	// found by SSN: Ada Lovelace true
	// found by email: c-1
	// gormcrypt: decrypt Customer.Name (column customers.name, primary key c-2): cannot decrypt value: open customers.name row c-2 (KEK high/v1): authentication failed: value does not authenticate for this table, column, row, class and tenant
}
