package gormcrypt

import (
	"context"
	"reflect"
	"strconv"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Row binding for keys the database generates.
//
// A value is bound to its row through the row's primary key. When the
// database assigns the key (auto-increment, a column default), the key
// does not exist when the INSERT is built, so the values are first sealed
// without it; once the INSERT has returned the key (RETURNING, or the last
// insert id), gormcrypt seals them again bound to it and writes them with
// one UPDATE per row, through the statement's own connection: inside the
// INSERT's transaction (GORM opens one for every Create unless
// SkipDefaultTransaction is set; then the two statements are separate and
// a failure between them leaves the values encrypted but not row-bound).
// Tag a field `unbound` to skip this for it (one statement less per
// Create); its values are then bound to the row from their first update.

const rebindKey = "gormcrypt:rebind"

// rebindRow is one inserted row whose values wait for the row's key.
type rebindRow struct {
	index  int // the row's position in the INSERT
	fields []*cfield
	values []any // the plaintext values, as the caller gave them
}

type rebindState struct {
	pl   *plan
	rows []rebindRow
}

// afterCreate seals again, bound to the new key, every value of a row
// whose key the database generated.
func (p *Plugin) afterCreate(db *gorm.DB) {
	v, ok := db.Statement.Settings.LoadAndDelete(rebindKey)
	if !ok || db.Error != nil || db.DryRun {
		return
	}
	rs := v.(*rebindState)
	stmt := db.Statement
	ctx := stmt.Context
	table := rs.pl.s.Table
	if stmt.Table != "" && stmt.TableExpr == nil && !strings.EqualFold(stmt.Table, table) {
		table = stmt.Table
	}
	for _, r := range rs.rows {
		keyVals := p.insertedKey(ctx, stmt, rs.pl, r.index)
		if keyVals == nil {
			continue // no key came back (conflict, a map without its key)
		}
		key := keyText(keyVals)
		set := make(clause.Set, 0, len(r.fields))
		for i, cf := range r.fields {
			ct, _, err := cf.encryptAny(ctx, key, r.values[i])
			if err != nil {
				db.AddError(err)
				return
			}
			set = append(set, clause.Assignment{Column: clause.Column{Name: cf.Column}, Value: ct})
		}
		where := make([]clause.Expression, len(rs.pl.pks))
		for i, pk := range rs.pl.pks {
			where[i] = clause.Eq{Column: clause.Column{Name: pk.DBName}, Value: keyVals[i]}
		}
		up := &gorm.Statement{DB: db, Context: ctx, Clauses: map[string]clause.Clause{}, Table: table}
		up.AddClause(clause.Update{Table: clause.Table{Name: table}})
		up.AddClause(set)
		up.AddClause(clause.Where{Exprs: where})
		up.Build("UPDATE", "SET", "WHERE")
		if _, err := stmt.ConnPool.ExecContext(ctx, up.SQL.String(), up.Vars...); err != nil {
			db.AddError(err)
			return
		}
	}
}

// insertedKey returns the primary key values of the index-th inserted row
// as the database assigned them, or nil if any is missing or zero.
func (p *Plugin) insertedKey(ctx context.Context, stmt *gorm.Statement, pl *plan, index int) []any {
	rv := stmt.ReflectValue
	if rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array {
		if index >= rv.Len() {
			return nil
		}
		rv = reflect.Indirect(rv.Index(index))
	} else if index != 0 {
		return nil
	}
	out := make([]any, len(pl.pks))
	for i, pk := range pl.pks {
		var v any
		switch rv.Kind() {
		case reflect.Struct:
			if stmt.Schema == nil {
				return nil
			}
			f := stmt.Schema.LookUpField(pk.DBName)
			if f == nil {
				return nil
			}
			var zero bool
			v, zero = f.ValueOf(ctx, rv)
			if zero {
				return nil
			}
		case reflect.Map:
			m, ok := rv.Interface().(map[string]any)
			if !ok {
				return nil
			}
			for k, x := range m {
				if strings.EqualFold(k, pk.DBName) || k == pk.Name {
					v = x
				}
			}
			if isZeroValue(v) {
				return nil
			}
		default:
			return nil
		}
		out[i] = v
	}
	return out
}

// keyText is the row key of primary key values (see plan.rowOf).
func keyText(vals []any) string {
	if len(vals) == 1 {
		return keyString(vals[0])
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = strconv.Quote(keyString(v))
	}
	return strings.Join(parts, ",")
}
