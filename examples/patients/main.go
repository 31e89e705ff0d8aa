// Command patients is a runnable tour of gormcrypt: it stores patients with
// encrypted fields in a SQLite file, searches them by SSN (blind index) and
// email (deterministic), and shows what the database really holds.
//
//	go run ./examples/patients
//
// It uses envelopetest's in-memory keys; an application passes a
// *keyring.Keyring to gormcrypt.New instead.
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/glebarez/sqlite"
	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
)

// Patient is the model from the issue, with a client-generated UUID key:
// every value is bound to its table, column, class and row.
type Patient struct {
	ID    uuid.UUID `gorm:"size:36"`
	Name  string    `fieldcrypt:"high"`
	SSN   string    `fieldcrypt:"critical,blindindex,unique"`
	Email string    `fieldcrypt:"high,deterministic"`
	Notes *string   `fieldcrypt:"critical"`
	Age   int       // not encrypted
}

// BeforeCreate assigns the key before the insert, so values are row-bound.
func (p *Patient) BeforeCreate(*gorm.DB) error {
	if p.ID == uuid.Nil {
		p.ID = uuid.New()
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	dir, err := os.MkdirTemp("", "fieldcrypt-patients")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := gorm.Open(sqlite.Open(filepath.Join(dir, "clinic.db")), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return err
	}
	if err := db.Use(gormcrypt.New(envelopetest.New())); err != nil {
		return err
	}
	if err := gormcrypt.AutoMigrate(db, &Patient{}); err != nil {
		return err
	}

	// A tenant is chosen per statement through the context.
	ctx := gormcrypt.WithTenant(context.Background(), "st-marys")
	tx := db.WithContext(ctx)

	notes := "penicillin allergy"
	patients := []Patient{
		{Name: "Ada Lovelace", SSN: "123-45-6789", Email: "ada@example.com", Notes: &notes, Age: 36},
		{Name: "Charles Babbage", SSN: "987-65-4321", Email: "charles@example.com", Age: 79},
	}
	if err := tx.Create(&patients).Error; err != nil {
		return err
	}

	var ada Patient
	if err := tx.Where(&Patient{SSN: "123-45-6789"}).First(&ada).Error; err != nil {
		return err
	}
	fmt.Printf("by SSN:   %s, %s\n", ada.Name, *ada.Notes)

	var charles Patient
	if err := tx.Where(gormcrypt.Eq("email", "charles@example.com")).First(&charles).Error; err != nil {
		return err
	}
	fmt.Printf("by email: %s, age %d\n", charles.Name, charles.Age)

	if err := tx.Model(&ada).Update("name", "Augusta Ada King").Error; err != nil {
		return err
	}

	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	var name, bidx sql.NullString
	if err := sqlDB.QueryRow("SELECT name, ssn_bidx FROM patients WHERE id = ?", ada.ID.String()).Scan(&name, &bidx); err != nil {
		return err
	}
	fmt.Printf("stored:   name=%.24s... ssn_bidx=%s\n", name.String, bidx.String)

	// Move Ada's name ciphertext into Charles's row: it no longer decrypts.
	if _, err := sqlDB.Exec("UPDATE patients SET name = ? WHERE id = ?", name.String, charles.ID.String()); err != nil {
		return err
	}
	var moved Patient
	err = tx.First(&moved, "id = ?", charles.ID).Error
	fmt.Println("moved:   ", errors.Is(err, gormcrypt.ErrDecrypt), err)

	fields, err := gormcrypt.Fields(db, &Patient{})
	if err != nil {
		return err
	}
	for _, f := range fields {
		fmt.Printf("field:    %s.%s class=%s mode=%s blindindex=%q\n", f.Table, f.Column, f.Class, f.Mode, f.BlindIndex)
	}
	return nil
}
