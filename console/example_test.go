package console_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/console"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
)

type Customer struct {
	ID  string
	SSN string `fieldcrypt:"critical,blindindex"`
	Age int
}

// An operator looks at a customer found by SSN: the SSN shows as
// metadata; revealing it takes a reason and is recorded.
func Example() {
	dir, _ := os.MkdirTemp("", "console-example")
	defer os.RemoveAll(dir)
	db, _ := gorm.Open(sqlite.Open(filepath.Join(dir, "app.db")), &gorm.Config{Logger: logger.Discard})
	keys := envelopetest.New()
	_ = db.Use(gormcrypt.New(keys))
	_ = gormcrypt.AutoMigrate(db, &Customer{})
	db.Create(&Customer{ID: "c-1", SSN: "078-05-1120", Age: 36})
	fields, _ := gormcrypt.Fields(db, &Customer{})

	log := &audit.Memory{}
	c, _ := console.NewGorm(db, console.Config{Keys: keys, Audit: log, Columns: console.FromFields("id", fields...)})
	ctx := audit.WithActor(context.Background(), audit.Person("ops:ann"))
	q := console.Query{Table: "customers", Where: &console.Condition{Column: "ssn", Value: "078-05-1120"}}

	res, _ := c.Show(ctx, q)
	res.WriteText(os.Stdout)

	_, err := c.Reveal(ctx, q, []string{"ssn"}, "")
	fmt.Println(err)

	res, _ = c.Reveal(ctx, q, []string{"ssn"}, "ticket 4711")
	res.WriteText(os.Stdout)
	for _, e := range log.Events() {
		if e.Type == audit.DecryptAccess {
			fmt.Println(e.Type, e.Actor, e.Purpose, e.Table, e.Column, e.Row, e.Class)
		}
	}
	// Output:
	// ID   SSN                             AGE  SSN_BIDX
	// c-1  [critical v1, 11 B, row-bound]  36   [blind index of critical, 16 B]
	// (1 rows)
	// audit: a purpose is required to read this data: a reveal needs a reason (--reason)
	// ID   SSN          AGE  SSN_BIDX
	// c-1  078-05-1120  36   [blind index of critical, 16 B]
	// (1 rows; values revealed: 1, each recorded)
	// decrypt.access ops:ann ticket 4711 customers ssn c-1 critical
}
