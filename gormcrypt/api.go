package gormcrypt

import (
	"context"
	"fmt"
	"strconv"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Fields returns the encrypted fields of model, in declaration order, and
// prepares the model (see AutoMigrate). The plugin must be registered on
// db. A model without fieldcrypt tags has no fields.
func Fields(db *gorm.DB, model interface{}) ([]Field, error) {
	_, pl, err := modelPlan(db, model)
	if err != nil {
		return nil, err
	}
	out := make([]Field, len(pl.fields))
	for i, cf := range pl.fields {
		out[i] = cf.Field
	}
	return out, nil
}

// AutoMigrate prepares the models for encryption (encrypted columns become
// text, blind index columns and their indexes are added to the schema) and
// runs db.AutoMigrate on them. Call it instead of db.AutoMigrate for models
// with encrypted fields: GORM offers plugins no hook into AutoMigrate, so
// a model GORM migrates before gormcrypt has seen it gets its Go column
// types and no blind index column.
func AutoMigrate(db *gorm.DB, models ...interface{}) error {
	p, err := pluginOf(db)
	if err != nil {
		return err
	}
	for _, m := range models {
		if _, err := p.prepareModel(db, m); err != nil {
			return err
		}
	}
	return db.AutoMigrate(models...)
}

// CountPlaintext counts, per encrypted column of model, the rows whose
// value is not NULL and not a ciphertext: legacy plaintext still to
// migrate. Soft-deleted rows are counted too.
func CountPlaintext(ctx context.Context, db *gorm.DB, model interface{}) (map[string]int64, error) {
	fields, err := Fields(db, model)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(fields))
	for _, f := range fields {
		var n int64
		col := clause.Column{Name: f.Column}
		err := db.WithContext(ctx).Session(&gorm.Session{NewDB: true}).Model(model).Unscoped().
			Where("? IS NOT NULL AND ? NOT LIKE ?", col, col, envelope.TextPrefix+"%").Count(&n).Error
		if err != nil {
			return nil, err
		}
		out[f.Column] = n
	}
	return out, nil
}

func quoteKey(s string) string { return strconv.Quote(s) }

// modelPlan returns the plugin registered on db and model's prepared plan.
func modelPlan(db *gorm.DB, model any) (*Plugin, *plan, error) {
	p, err := pluginOf(db)
	if err != nil {
		return nil, nil, err
	}
	pl, err := p.prepareModel(db, model)
	if err != nil {
		return nil, nil, err
	}
	return p, pl, nil
}

// keyedPlan is modelPlan for what needs a primary key (what names the
// operation in the error).
func keyedPlan(db *gorm.DB, model any, what string) (*Plugin, *plan, error) {
	p, pl, err := modelPlan(db, model)
	if err != nil {
		return nil, nil, err
	}
	if len(pl.pks) == 0 {
		return nil, nil, fmt.Errorf("%w: %s needs a primary key (%s has none)", ErrUnsupportedPath, what, pl.s.Name)
	}
	return p, pl, nil
}
