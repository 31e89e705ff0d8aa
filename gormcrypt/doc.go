// Package gormcrypt encrypts struct fields transparently in GORM.
//
// Tag a field with its classification and register the plugin once; every
// GORM write path then stores the field as a fieldcrypt ciphertext and every
// read path gives the plaintext back:
//
//	type Patient struct {
//		ID    uuid.UUID
//		Name  string  `fieldcrypt:"high"`
//		SSN   string  `fieldcrypt:"critical,blindindex,unique"`
//		Email string  `fieldcrypt:"high,deterministic"`
//		Notes *string `fieldcrypt:"critical"`
//	}
//
//	db.Use(gormcrypt.New(keyring))
//	gormcrypt.AutoMigrate(db, &Patient{})
//	db.Create(&p)                                  // name, ssn, email, notes stored as "fc1:..."
//	db.Where(&Patient{SSN: ssn}).First(&found)     // searches the blind index ssn_bidx
//
// Why a plugin and not a serializer: GORM skips serializers on several write
// paths (Updates with a map, Update, UpdateColumn, Create with a map), calls
// a serializer several times per WHERE condition, and runs it before an
// auto-increment key exists. gormcrypt instead rewrites the statement itself
// in callbacks registered around gorm:create, gorm:update, gorm:query,
// gorm:delete, gorm:row and gorm:raw, and decrypts while GORM scans a row.
// The caller's struct is never touched on a write: it keeps the plaintext,
// only the SQL statement carries the ciphertext.
//
// Each value is bound (through the AEAD associated data) to its table,
// column, classification and tenant, and to the row's primary key when the
// key is known before the write (client-generated UUIDs, an updated row).
// A ciphertext copied to another column or row fails to decrypt with an
// error naming the model, the column and the primary key.
//
// Values written with a key the database generates (auto-increment) are
// sealed again, bound to the key, once the INSERT returns it (tag a field
// `unbound` to skip that).
//
// # Failing closed, whatever the path
//
// Register every model at startup (AutoMigrate, Register or Fields): the
// plugin keeps one registry of the tables it has prepared and their
// encrypted columns, and checks every statement against it, whether it
// names a model, a table (db.Table("patients") is treated as its model), or
// carries raw SQL. Every SQL statement GORM sends passes a guard before it
// reaches the database or the SQL log: a plaintext (parameter or literal)
// that would reach an encrypted column in an assignment, a comparison or an
// INSERT, however the names are spelled, quoted or qualified, refuses the
// statement with ErrUnsupportedPath. Every result read into something that
// is not a model (maps, scalars, untagged structs, Row, Rows, Scan,
// ScanRows) comes back decrypted; a ciphertext gormcrypt cannot attribute
// to a registered column fails the read and empties the destination.
// gormcrypt never writes a plaintext into an encrypted column and never
// hands a ciphertext back as if it were the value. docs/gormcrypt.md has
// the rules per database and the full path table, which TestPathMatrix
// checks on SQLite, PostgreSQL and MariaDB.
//
// # Who read what, and why
//
// WithAudit records every decrypt (decrypt.access), failure and refusal,
// with the actor and purpose the request's context carries
// (audit.WithActor, audit.WithPurpose). WithAccessPolicy sets per class
// which decrypts are recorded and who must state a purpose; by default a
// person reading critical data must. A read without a required purpose
// fails with ErrPurposeRequired before anything of the class is decrypted
// (audit.go lists the paths).
package gormcrypt
