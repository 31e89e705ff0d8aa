package gormcrypt

import (
	"reflect"
	"slices"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// planOf prepares the statement's schema (and related schemas) and returns
// its plan, or nil when the statement has no schema.
func (p *Plugin) planOf(db *gorm.DB) *plan {
	s := db.Statement.Schema
	if s == nil {
		return nil
	}
	if v, ok := p.plans.Load(s); ok {
		if pl := v.(*plan); pl.treeDone.Load() {
			return pl
		}
	}
	pl, err := p.prepareTree(s)
	if err != nil {
		db.AddError(err)
		return nil
	}
	return pl
}

// beforeCreate builds the INSERT itself, with ciphertexts in place of the
// plaintexts, so gorm:create only executes it. The caller's struct is never
// modified: it keeps the plaintext. A statement that names a registered
// table instead of a model (db.Table("patients").Create(map)) is encrypted
// with that table's model.
func (p *Plugin) beforeCreate(db *gorm.DB) {
	if db.Error != nil {
		return
	}
	pl := p.planOf(db)
	if db.Error != nil {
		return
	}
	pl, _ = p.targetPlan(db, pl)
	if pl == nil || len(pl.fields) == 0 || db.Statement.SQL.Len() > 0 {
		return
	}
	stmt := db.Statement
	// What gorm:create does before building, in the same order.
	if stmt.Schema != nil {
		if !stmt.Unscoped {
			for _, c := range stmt.Schema.CreateClauses {
				stmt.AddClause(c)
			}
		}
		if slices.Contains(stmt.BuildClauses, "RETURNING") && len(stmt.Schema.FieldsWithDefaultDBValue) > 0 {
			if _, ok := stmt.Clauses["RETURNING"]; !ok {
				cols := make([]clause.Column, 0, len(stmt.Schema.FieldsWithDefaultDBValue))
				for _, f := range stmt.Schema.FieldsWithDefaultDBValue {
					if f.Readable {
						cols = append(cols, clause.Column{Name: f.DBName})
					}
				}
				if len(cols) > 0 {
					stmt.AddClause(clause.Returning{Columns: cols})
				}
			}
		}
	}
	stmt.AddClauseIfNotExists(clause.Insert{})
	values := callbacks.ConvertToCreateValues(stmt)
	if db.Error != nil {
		return
	}
	unbound := p.upsertUnbound(db, pl)
	rebind, err := p.encryptValues(db, pl, &values, unbound)
	if err != nil {
		db.AddError(err)
		return
	}
	if err := p.encryptOnConflict(db, pl); err != nil {
		db.AddError(err)
		return
	}
	if len(rebind) > 0 {
		stmt.Settings.Store(rebindKey, &rebindState{pl: pl, rows: rebind})
	}
	stmt.AddClause(values)
	stmt.SQL.Grow(180)
	stmt.Build(stmt.BuildClauses...)
}

// upsertUnbound reports whether an upsert may land its values in a row
// other than the one whose key is inserted: then they are sealed without a
// row binding.
func (p *Plugin) upsertUnbound(db *gorm.DB, pl *plan) bool {
	c, ok := db.Statement.Clauses["ON CONFLICT"]
	if !ok {
		return false
	}
	oc, _ := c.Expression.(clause.OnConflict)
	if oc.DoNothing || (!oc.UpdateAll && len(oc.DoUpdates) == 0) {
		return false
	}
	if db.Dialector.Name() == "mysql" || len(oc.Columns) != len(pl.pks) {
		return true // ON DUPLICATE KEY fires on any unique key
	}
	for i, c := range oc.Columns {
		if c.Name != pl.pks[i].DBName {
			return true
		}
	}
	return false
}

func (p *Plugin) encryptValues(db *gorm.DB, pl *plan, values *clause.Values, unbound bool) ([]rebindRow, error) {
	ctx := db.Statement.Context
	// Blind index columns GORM listed (with empty values) are dropped: they
	// are added back below, after their source column, whatever Select says.
	dropped := false
	for _, c := range values.Columns {
		if pl.bidxCol(c.Name) != nil {
			dropped = true
		}
	}
	if dropped {
		cols := make([]clause.Column, 0, len(values.Columns))
		keepIdx := make([]int, 0, len(values.Columns))
		for j, c := range values.Columns {
			if pl.bidxCol(c.Name) == nil {
				cols = append(cols, c)
				keepIdx = append(keepIdx, j)
			}
		}
		for i, row := range values.Values {
			nr := make([]interface{}, len(keepIdx), len(keepIdx)+len(pl.byBidx))
			for k, j := range keepIdx {
				nr[k] = row[j]
			}
			values.Values[i] = nr
		}
		values.Columns = cols
	}
	type target struct {
		cf   *cfield
		col  int
		bidx int // -1 without a blind index
	}
	var targets []target
	pkPos := make([]int, len(pl.pks))
	for i := range pkPos {
		pkPos[i] = -1
	}
	for j, c := range values.Columns {
		if cf := pl.col(c.Name); cf != nil {
			targets = append(targets, target{cf: cf, col: j, bidx: -1})
		}
		for i, pk := range pl.pks {
			if strings.EqualFold(pk.DBName, columnName(c)) {
				pkPos[i] = j
			}
		}
	}
	for t := range targets {
		if targets[t].cf.BlindIndex != "" {
			values.Columns = append(values.Columns, clause.Column{Name: targets[t].cf.BlindIndex})
			targets[t].bidx = len(values.Columns) - 1
			for i := range values.Values {
				values.Values[i] = append(values.Values[i], nil)
			}
		}
	}
	var rebind []rebindRow
	for i, row := range values.Values {
		key := ""
		if !unbound && len(pl.pks) > 0 {
			key = rowKeyOf(row, pkPos)
		}
		var rb *rebindRow
		for _, t := range targets {
			orig := row[t.col]
			ct, bidx, err := t.cf.encryptAny(ctx, key, orig)
			if err != nil {
				return nil, err
			}
			row[t.col] = ct
			if t.bidx >= 0 {
				row[t.bidx] = bidx
			}
			// A value sealed before the database assigned the row's key is
			// sealed again, bound to the key, once the INSERT returns it.
			if key == "" && !unbound && len(pl.pks) > 0 && ct != nil && t.cf.Mode == Randomized && !t.cf.Unbound {
				if rb == nil {
					rebind = append(rebind, rebindRow{index: i})
					rb = &rebind[len(rebind)-1]
				}
				rb.fields = append(rb.fields, t.cf)
				rb.values = append(rb.values, orig)
			}
		}
		values.Values[i] = row
	}
	return rebind, nil
}

// rowKeyOf returns the row key of an INSERT row from its primary key
// columns, "" if any is missing or zero.
func rowKeyOf(row []interface{}, pkPos []int) string {
	if len(pkPos) == 1 {
		if pkPos[0] < 0 || isZeroValue(row[pkPos[0]]) {
			return ""
		}
		return keyString(row[pkPos[0]])
	}
	parts := make([]any, len(pkPos))
	for i, j := range pkPos {
		if j < 0 || isZeroValue(row[j]) {
			return ""
		}
		parts[i] = row[j]
	}
	return envelope.RowKeys(parts...)
}

// encryptOnConflict encrypts explicit values in ON CONFLICT DO UPDATE SET
// and keeps blind index columns in step with their source columns.
func (p *Plugin) encryptOnConflict(db *gorm.DB, pl *plan) error {
	c, ok := db.Statement.Clauses["ON CONFLICT"]
	if !ok {
		return nil
	}
	oc, _ := c.Expression.(clause.OnConflict)
	if len(oc.DoUpdates) == 0 {
		return nil
	}
	set, err := p.encryptSet(db, pl, oc.DoUpdates, "", true)
	if err != nil {
		return err
	}
	oc.DoUpdates = set
	c.Expression = oc
	db.Statement.Clauses["ON CONFLICT"] = c
	return nil
}

// encryptSet returns a copy of set with encrypted columns sealed for row
// and blind index assignments following their source column. With
// excludedOK, a value that names the excluded (proposed) row is kept.
func (p *Plugin) encryptSet(db *gorm.DB, pl *plan, set clause.Set, row string, excludedOK bool) (clause.Set, error) {
	ctx := db.Statement.Context
	out := make(clause.Set, 0, len(set)+1)
	for _, a := range set {
		if pl.bidxCol(a.Column.Name) != nil {
			continue // recomputed below
		}
		cf := pl.col(a.Column.Name)
		if cf == nil {
			out = append(out, a)
			continue
		}
		if col, ok := a.Value.(clause.Column); ok && excludedOK && col.Table == "excluded" {
			out = append(out, a)
			if cf.BlindIndex != "" {
				out = append(out, clause.Assignment{Column: clause.Column{Name: cf.BlindIndex}, Value: clause.Column{Table: "excluded", Name: cf.BlindIndex}})
			}
			continue
		}
		ct, bidx, err := cf.encryptAny(ctx, row, a.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, clause.Assignment{Column: a.Column, Value: ct})
		if cf.BlindIndex != "" {
			out = append(out, clause.Assignment{Column: clause.Column{Name: cf.BlindIndex}, Value: bidx})
		}
	}
	return out, nil
}

const setKey = "gormcrypt:set"

// beforeUpdate computes the SET clause (as gorm:update would) with
// ciphertexts, so gorm:update uses it as is. Values are bound to the row
// when the statement updates one struct whose primary key is known.
func (p *Plugin) beforeUpdate(db *gorm.DB) {
	if db.Error != nil {
		return
	}
	pl := p.planOf(db)
	if db.Error != nil {
		return
	}
	pl, _ = p.targetPlan(db, pl)
	if pl == nil || len(pl.fields) == 0 {
		return
	}
	p.rewriteWhere(db, pl)
	stmt := db.Statement
	if db.Error != nil || stmt.SQL.Len() > 0 {
		return
	}
	var set clause.Set
	ours := false
	if c, ok := stmt.Clauses["SET"]; ok {
		set, _ = c.Expression.(clause.Set)
	} else {
		set = callbacks.ConvertToAssignments(stmt)
		ours = true
		if db.Error != nil || len(set) == 0 {
			return
		}
	}
	// Bind to the model's key only when GORM built the SET clause: then it
	// also added "WHERE <primary key> = <the model's key>".
	row := ""
	if ours && stmt.Schema != nil && stmt.Schema == pl.s && stmt.ReflectValue.Kind() == reflect.Struct && len(pl.pks) > 0 && stmt.Schema.ModelType == stmt.ReflectValue.Type() {
		row = pl.rowOf(stmt.Context, stmt.ReflectValue)
	}
	for _, a := range set {
		for _, pk := range pl.pks {
			if strings.EqualFold(columnName(a.Column), pk.DBName) {
				// The statement changes the key: bind to the new one.
				row = ""
				if len(pl.pks) == 1 && !isZeroValue(a.Value) {
					row = keyString(a.Value)
				}
			}
		}
	}
	enc, err := p.encryptSet(db, pl, set, row, false)
	if err != nil {
		db.AddError(err)
		return
	}
	stmt.AddClause(enc)
	if ours {
		stmt.Settings.Store(setKey, true)
	}
}

func (p *Plugin) afterUpdate(db *gorm.DB) {
	if _, ok := db.Statement.Settings.LoadAndDelete(setKey); ok {
		delete(db.Statement.Clauses, "SET")
	}
}

func (p *Plugin) beforeDelete(db *gorm.DB) {
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
