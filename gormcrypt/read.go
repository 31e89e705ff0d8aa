package gormcrypt

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// beforeQuery prepares the schemas the result scans into, rewrites the
// WHERE clause and attaches the scan state to the statement context.
func (p *Plugin) beforeQuery(db *gorm.DB) {
	if db.Error != nil {
		return
	}
	pl := p.planOf(db)
	if db.Error != nil {
		return
	}
	needState := pl != nil && pl.treeEncrypted.Load()
	dt := destStructType(db.Statement.Dest)
	readPlan := pl // the plan whose fields GORM scans the result into
	if dt == nil {
		readPlan = nil // a map or scalar: the guard pool decrypts (rows.go)
	} else if db.Statement.Schema == nil || dt != db.Statement.Schema.ModelType {
		// A destination of another type (a DTO) is prepared too. One GORM
		// cannot parse is not a model: nothing to prepare.
		dp, err := p.prepareModel(db, reflect.New(dt).Interface())
		if errors.Is(err, ErrTag) {
			db.AddError(err)
			return
		}
		needState = needState || dp != nil && dp.treeEncrypted.Load()
		readPlan = dp
	}
	if readPlan != nil && len(readPlan.fields) > 0 {
		ctx := db.Statement.Context
		if ctx == nil {
			ctx = context.Background()
		}
		if ctx.Value(trustedKey{}) == nil {
			if err := p.admit(ctx, selectedFields(readPlan, db.Statement.Selects, db.Statement.Omits)); err != nil {
				db.AddError(err)
				return
			}
		}
	}
	wpl, _ := p.targetPlan(db, pl)
	if !needState && (wpl == nil || len(wpl.fields) == 0) {
		return
	}
	ctx := db.Statement.Context
	if ctx == nil {
		ctx = context.Background()
	}
	st := &state{parent: ctx, deferOK: true}
	if db.Statement.Schema != nil && pl != nil && len(pl.fields) > 0 && isMapDest(db.Statement.Dest) && pl.hasTypedFields() {
		// GORM scans map results into the model's Go field types, which
		// cannot hold a JSON struct. Scan by column type instead (the
		// model's query clauses, e.g. soft delete, are added here): the
		// guard pool decrypts, and afterQuery gives each value its field's
		// Go type.
		for _, c := range db.Statement.Schema.QueryClauses {
			db.Statement.AddClause(c)
		}
		st.schema = db.Statement.Schema
		db.Statement.Schema = nil
	}
	if pl != nil && len(pl.byBidx) > 0 && st.schema == nil {
		p.selectReadable(db, pl, st)
	}
	if wpl != nil && len(wpl.fields) > 0 {
		// The rewritten WHERE is put back after the query: FirstOrCreate
		// reads the conditions back into the struct it creates.
		st.where, st.hadWhere = db.Statement.Clauses["WHERE"]
		p.rewriteWhere(db, wpl)
	}
	db.Statement.Context = context.WithValue(ctx, stateKey{}, st)
}

// queryDecrypts reports whether a query's result rows are decrypted by the
// guard pool (rows.go): yes unless the destination is a model (or a view
// struct) with fieldcrypt tags, whose own fields decrypt while GORM scans.
func (p *Plugin) queryDecrypts(db *gorm.DB) bool {
	if ctx := db.Statement.Context; ctx != nil && ctx.Value(trustedKey{}) != nil {
		return false
	}
	dt := destStructType(db.Statement.Dest)
	if dt == nil {
		return true // a map, a scalar, a slice of scalars
	}
	if s := db.Statement.Schema; s != nil && dt == s.ModelType {
		if v, ok := p.plans.Load(s); ok {
			if pl := v.(*plan); len(pl.fields) > 0 || pl.treeEncrypted.Load() {
				return false
			}
		}
	}
	if dp := p.planOfType(db, dt); dp != nil && (len(dp.fields) > 0 || dp.treeEncrypted.Load()) {
		return false
	}
	return true
}

// selectReadable replaces SELECT * by the model's readable columns when
// the table has blind index columns: they are never read, so they are not
// transferred (and SQLite prepares the narrower statement faster).
func (p *Plugin) selectReadable(db *gorm.DB, pl *plan, st *state) {
	stmt := db.Statement
	if len(stmt.Selects) > 0 || len(stmt.Omits) > 0 || len(stmt.Joins) > 0 || stmt.SQL.Len() > 0 || stmt.Distinct {
		return
	}
	if _, ok := stmt.Clauses["SELECT"]; ok {
		return
	}
	if destStructType(stmt.Dest) != pl.s.ModelType {
		return
	}
	cols := make([]clause.Column, 0, len(pl.s.DBNames))
	for _, name := range pl.s.DBNames {
		if f := pl.s.FieldsByDBName[name]; f != nil && f.Readable {
			cols = append(cols, clause.Column{Name: name})
		}
	}
	stmt.AddClause(clause.Select{Columns: cols})
	st.addedSelect = true
}

// destStructType returns the struct type a destination scans into, or nil.
func destStructType(dest interface{}) reflect.Type {
	if dest == nil {
		return nil
	}
	t := reflect.TypeOf(dest)
	for t.Kind() == reflect.Ptr || t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeOf(struct{}{}) {
		return nil
	}
	return t
}

// afterQuery restores the context, reports values left waiting for their
// primary key, resets the destination on a decryption error, and handles
// destinations that are not models.
func (p *Plugin) afterQuery(db *gorm.DB) {
	st := stateOf(db.Statement.Context)
	if st != nil {
		db.Statement.Context = st.parent
		if st.hadWhere {
			db.Statement.Clauses["WHERE"] = st.where
		}
		if st.schema != nil {
			db.Statement.Schema = st.schema
		}
		if st.addedSelect {
			delete(db.Statement.Clauses, "SELECT")
		}
		for _, items := range st.pending {
			it := items[0]
			db.AddError(it.cf.fail("decrypt", "", ErrDecrypt, fmt.Errorf("%w: the value is bound to its row but the primary key was not selected", ErrUnsupportedPath)))
			break
		}
	}
	// Even a failed query (a driver's scan error) must not leave a
	// ciphertext in the destination.
	p.checkDest(db)
	if isOurs(db.Error) {
		resetDest(db)
	}
}

// isOurs reports whether err comes from gormcrypt.
func isOurs(err error) bool {
	var ge *Error
	return err != nil && (errors.As(err, &ge) || errors.Is(err, ErrUnsupportedPath) || errors.Is(err, ErrDecrypt))
}

func isMapDest(dest interface{}) bool {
	switch dest.(type) {
	case *map[string]interface{}, map[string]interface{}, *[]map[string]interface{}:
		return true
	}
	return false
}

// hasTypedFields reports whether an encrypted field is not a string or
// []byte.
func (pl *plan) hasTypedFields() bool {
	for _, cf := range pl.fields {
		if cf.kind != kString && cf.kind != kBytes {
			return true
		}
	}
	return false
}

// resetDest zeroes the destination: after a decryption error the result
// is not returned half filled.
func resetDest(db *gorm.DB) {
	rv := reflect.ValueOf(db.Statement.Dest)
	for rv.Kind() == reflect.Ptr {
		if rv.IsNil() {
			return
		}
		rv = rv.Elem()
	}
	if !rv.CanSet() {
		return
	}
	switch rv.Kind() {
	case reflect.Slice:
		rv.Set(reflect.MakeSlice(rv.Type(), 0, 0))
	case reflect.Map:
		rv.Set(reflect.MakeMap(rv.Type()))
	default:
		rv.Set(reflect.Zero(rv.Type()))
	}
}

// checkDest finishes results GORM scanned without the model's fields.
// The guard pool has decrypted them already (rows.go); map values are
// turned into the field's Go type, as a model read gives them. Any
// ciphertext still in the destination (a table gormcrypt does not know)
// fails the query: it is never handed back as if it were the value.
func (p *Plugin) checkDest(db *gorm.DB) {
	stmt := db.Statement
	var pl *plan
	if stmt.Schema != nil {
		if v, ok := p.plans.Load(stmt.Schema); ok {
			pl = v.(*plan)
		}
		if pl == nil || len(pl.fields) == 0 {
			// A model without encrypted fields: only check when a
			// different (non-model) destination could hold ciphertexts.
			if dt := destStructType(stmt.Dest); dt == stmt.Schema.ModelType && !p.readsRegistered(db) {
				return
			}
		}
	}
	var tables []*tableEntry
	if v, ok := stmt.Settings.LoadAndDelete(tablesKey); ok {
		tables = v.([]*tableEntry)
	}
	conv := func(m map[string]interface{}) {
		if db.Error != nil {
			return
		}
		for k, v := range m {
			if cf := p.mapField(pl, tables, k); cf != nil {
				m[k] = cf.fromStd(v)
			}
		}
	}
	switch d := stmt.Dest.(type) {
	case *map[string]interface{}:
		conv(*d)
	case map[string]interface{}:
		conv(d)
	case *[]map[string]interface{}:
		for _, m := range *d {
			conv(m)
		}
	}
	if path := findCiphertext(reflect.ValueOf(stmt.Dest), 0); path != "" {
		db.AddError(fmt.Errorf("%w: a ciphertext was scanned into %s, and gormcrypt cannot tell which encrypted column it came from (a table not registered with gormcrypt, or an alias); query through the model", ErrUnsupportedPath, path))
	}
}

// readsRegistered reports whether the statement names a registered table
// other than through its model.
func (p *Plugin) readsRegistered(db *gorm.DB) bool {
	return len(p.statementTables(db)) > 0 && (db.Statement.Schema == nil || p.reg.get(db.Statement.Schema.Table) == nil)
}

// mapField returns the encrypted field of a map result column.
func (p *Plugin) mapField(pl *plan, tables []*tableEntry, column string) *cfield {
	if cf := pl.col(column); cf != nil {
		return cf
	}
	name := strings.ToLower(column)
	var found *cfield
	for _, t := range tables {
		if cf := t.cols[name]; cf != nil {
			if found != nil {
				return nil // two tables encrypt it: leave the value as read
			}
			found = cf
		}
	}
	return found
}

func (p *Plugin) planOfType(db *gorm.DB, t reflect.Type) *plan {
	st := &gorm.Statement{DB: db}
	if err := st.Parse(reflect.New(t).Interface()); err != nil || st.Schema == nil {
		return nil
	}
	v, ok := p.plans.Load(st.Schema)
	if !ok {
		return nil
	}
	return v.(*plan)
}

func isCiphertextValue(v interface{}) bool {
	switch x := v.(type) {
	case string:
		return envelope.IsText(x)
	case []byte:
		return envelope.IsCiphertext(x)
	case *string:
		return x != nil && envelope.IsText(*x)
	case driver.Valuer:
		if dv, err := x.Value(); err == nil {
			if s, ok := dv.(string); ok {
				return envelope.IsText(s)
			}
		}
	}
	return false
}

// findCiphertext walks a destination and returns a description of where a
// ciphertext text is, or "".
func findCiphertext(rv reflect.Value, depth int) string {
	if depth > 6 || !rv.IsValid() {
		return ""
	}
	switch rv.Kind() {
	case reflect.Ptr, reflect.Interface:
		if rv.IsNil() {
			return ""
		}
		return findCiphertext(rv.Elem(), depth+1)
	case reflect.String:
		if envelope.IsText(rv.String()) {
			return "a " + rv.Type().String()
		}
	case reflect.Slice, reflect.Array:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			if rv.Kind() == reflect.Slice && envelope.IsText(string(rv.Bytes()[:min(rv.Len(), len(envelope.TextPrefix))])) {
				return "a " + rv.Type().String()
			}
			return ""
		}
		for i := 0; i < rv.Len(); i++ {
			if s := findCiphertext(rv.Index(i), depth+1); s != "" {
				return s
			}
		}
	case reflect.Map:
		it := rv.MapRange()
		for it.Next() {
			if s := findCiphertext(it.Value(), depth+1); s != "" {
				return "map key " + fmt.Sprint(it.Key().Interface())
			}
		}
	case reflect.Struct:
		t := rv.Type()
		for i := 0; i < rv.NumField(); i++ {
			if t.Field(i).IsExported() {
				if s := findCiphertext(rv.Field(i), depth+1); s != "" {
					return "field " + t.Name() + "." + t.Field(i).Name
				}
			}
		}
	}
	return ""
}

// beforeRow prepares the schema and rewrites WHERE for Row, Rows and Scan.
func (p *Plugin) beforeRow(db *gorm.DB) {
	if db.Error != nil {
		return
	}
	pl := p.planOf(db)
	if db.Error != nil {
		return
	}
	if pl, _ = p.targetPlan(db, pl); pl != nil && len(pl.fields) > 0 {
		p.rewriteWhere(db, pl)
	}
}
