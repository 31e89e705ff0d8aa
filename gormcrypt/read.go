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
	if dt := destStructType(db.Statement.Dest); dt != nil && (db.Statement.Schema == nil || dt != db.Statement.Schema.ModelType) {
		// A destination of another type (a DTO) is prepared too. One GORM
		// cannot parse is not a model: nothing to prepare.
		dp, err := p.prepareModel(db, reflect.New(dt).Interface())
		if errors.Is(err, ErrTag) {
			db.AddError(err)
			return
		}
		needState = needState || dp != nil && dp.treeEncrypted.Load()
	}
	if !needState {
		return
	}
	ctx := db.Statement.Context
	if ctx == nil {
		ctx = context.Background()
	}
	st := &state{parent: ctx, deferOK: true}
	if pl != nil && len(pl.fields) > 0 && isMapDest(db.Statement.Dest) && pl.hasTypedFields() {
		// GORM scans map results into the model's Go field types, which
		// cannot hold a ciphertext of a time, number or struct. Scan by
		// column type instead (the model's query clauses, e.g. soft delete,
		// are added here) and decrypt into the map after the query.
		for _, c := range db.Statement.Schema.QueryClauses {
			db.Statement.AddClause(c)
		}
		st.schema = db.Statement.Schema
		db.Statement.Schema = nil
	}
	if pl != nil && len(pl.byBidx) > 0 && st.schema == nil {
		p.selectReadable(db, pl, st)
	}
	if pl != nil && len(pl.fields) > 0 {
		// The rewritten WHERE is put back after the query: FirstOrCreate
		// reads the conditions back into the struct it creates.
		st.where, st.hadWhere = db.Statement.Clauses["WHERE"]
		p.rewriteWhere(db, pl)
	}
	db.Statement.Context = context.WithValue(ctx, stateKey{}, st)
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
	if db.Error == nil {
		p.checkDest(db)
	}
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

// checkDest handles results GORM scanned without the model's fields: maps
// are decrypted when the statement has a model, any other ciphertext
// reaching a destination fails the query.
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
			if dt := destStructType(stmt.Dest); dt == stmt.Schema.ModelType {
				return
			}
		}
	}
	switch d := stmt.Dest.(type) {
	case *map[string]interface{}:
		db.AddError(p.decryptMap(db, pl, *d))
		return
	case map[string]interface{}:
		db.AddError(p.decryptMap(db, pl, d))
		return
	case *[]map[string]interface{}:
		for _, m := range *d {
			if err := p.decryptMap(db, pl, m); err != nil {
				db.AddError(err)
				return
			}
		}
		return
	}
	if dt := destStructType(stmt.Dest); dt != nil {
		if stmt.Schema != nil && dt == stmt.Schema.ModelType {
			return
		}
		if dp := p.planOfType(db, dt); dp != nil && len(dp.fields) > 0 {
			return
		}
	}
	if path := findCiphertext(reflect.ValueOf(stmt.Dest), 0); path != "" {
		db.AddError(fmt.Errorf("%w: a ciphertext was scanned into %s, which gormcrypt cannot decrypt (Pluck, a scalar, or a struct without fieldcrypt tags); query the model with Find", ErrUnsupportedPath, path))
	}
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

// decryptMap decrypts the encrypted columns of one result row in place.
func (p *Plugin) decryptMap(db *gorm.DB, pl *plan, m map[string]interface{}) error {
	if pl == nil || len(pl.fields) == 0 {
		for k, v := range m {
			if isCiphertextValue(v) {
				return fmt.Errorf("%w: column %q holds a ciphertext and the query has no model to decrypt it with (use db.Model(&T{}))", ErrUnsupportedPath, k)
			}
		}
		return nil
	}
	row, haveRow := "", len(pl.pks) > 0
	if len(pl.pks) == 1 {
		v, ok := m[pl.pks[0].DBName]
		if ok && !isZeroValue(v) {
			row = keyString(v)
		} else {
			haveRow = false
		}
	} else if len(pl.pks) > 1 {
		parts := make([]string, len(pl.pks))
		for i, pk := range pl.pks {
			v, ok := m[pk.DBName]
			if !ok || isZeroValue(v) {
				haveRow = false
				break
			}
			parts[i] = quoteKey(keyString(v))
		}
		if haveRow {
			row = strings.Join(parts, ",")
		}
	}
	ctx := db.Statement.Context
	for k, v := range m {
		cf := pl.byCol[k]
		if cf == nil {
			if isCiphertextValue(v) {
				return fmt.Errorf("%w: column %q holds a ciphertext but is not an encrypted field of %s", ErrUnsupportedPath, k, pl.s.Name)
			}
			continue
		}
		dv, err := cf.decodeStored(ctx, row, haveRow, v)
		if err != nil {
			return err
		}
		m[k] = dv
	}
	return nil
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
	if pl := p.planOf(db); pl != nil && len(pl.fields) > 0 {
		p.rewriteWhere(db, pl)
	}
}

// beforeRaw fails raw writes (Exec) that name an encrypted column of a
// known model and pass a parameter that is not a ciphertext.
func (p *Plugin) beforeRaw(db *gorm.DB) {
	if db.Error != nil || len(db.Statement.Vars) == 0 {
		return
	}
	if ctx := db.Statement.Context; ctx != nil && ctx.Value(trustedKey{}) != nil {
		return // RebuildBlindIndexes' own compare-and-swap
	}
	sql := db.Statement.SQL.String()
	toks := sqlTokens(sql)
	if len(toks) == 0 {
		return
	}
	switch strings.ToUpper(toks[0]) {
	case "INSERT", "UPDATE", "REPLACE", "MERGE", "UPSERT", "WITH":
	default:
		return
	}
	var hit *cfield
	for _, t := range toks {
		v, ok := p.tables.Load(t)
		if !ok {
			continue
		}
		pl := v.(*plan)
		for _, t2 := range toks {
			if cf := pl.byCol[t2]; cf != nil {
				hit = cf
				break
			}
		}
		if hit != nil {
			break
		}
	}
	if hit == nil {
		return
	}
	for _, v := range db.Statement.Vars {
		if dv, ok := v.(driver.Valuer); ok {
			if x, err := dv.Value(); err == nil {
				v = x
			}
		}
		plain := false
		switch x := v.(type) {
		case string:
			plain = !envelope.IsText(x)
		case []byte:
			plain = !envelope.IsCiphertext(x)
		}
		if plain {
			db.AddError(hit.fail("exec", "", ErrUnsupportedPath, errors.New("raw SQL writes an encrypted column with a parameter that is not a ciphertext; write through the model (Create, Save, Updates)")))
			// GORM logs any statement with SQL, even a failed one: drop it
			// so the parameters never reach the log.
			db.Statement.SQL.Reset()
			db.Statement.Vars = nil
			return
		}
	}
}
