package keyring

import (
	"context"

	"gorm.io/gorm"
)

// CreateTables creates the keyring tables (KEKTable, ScopeTable) in db, or
// adds the columns a newer version needs; it is idempotent. Run it once at
// setup (fieldcrypt init) and at upgrades (fieldcrypt keys upgrade), then
// open the store with NewGormStoreNoMigrate: other code never changes a
// production schema.
func CreateTables(ctx context.Context, db *gorm.DB) error {
	_, err := NewGormStore(ctx, db)
	return err
}
