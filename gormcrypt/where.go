package gormcrypt

import (
	"fmt"
	"reflect"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// search is the condition Eq and In return. The plugin replaces it, before
// the statement is built, by an IN over the ciphertexts (deterministic
// fields) or blind indexes (blindindex fields) of every live search key.
type search struct {
	column string
	values []interface{}
	not    bool
}

// Eq returns the condition column = value for an encrypted column that is
// searchable (deterministic or with a blind index), for use where GORM
// cannot see the column (string conditions):
//
//	db.Where(gormcrypt.Eq("ssn", ssn)).First(&p)
//
// column is a column or Go field name of the statement's model. The
// condition covers every live search key. On a column that is not
// encrypted it is a plain equality.
func Eq(column string, value interface{}) clause.Expression {
	return search{column: column, values: []interface{}{value}}
}

// In returns the condition column IN (values...), like Eq.
func In(column string, values ...interface{}) clause.Expression {
	if len(values) == 1 {
		if rv := reflect.ValueOf(values[0]); rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() != reflect.Uint8 {
			flat := make([]interface{}, rv.Len())
			for i := range flat {
				flat[i] = rv.Index(i).Interface()
			}
			values = flat
		}
	}
	return search{column: column, values: values}
}

// Build is reached only when the plugin did not rewrite the condition
// (plugin not registered, or no model): the statement fails.
func (s search) Build(b clause.Builder) {
	if st, ok := b.(*gorm.Statement); ok {
		_ = st.AddError(fmt.Errorf("%w: gormcrypt.Eq/In on %q needs the gormcrypt plugin and a model (db.Model(&T{}))", ErrUnsupportedPath, s.column))
	}
	b.WriteString("1 = 0")
}

// String never shows the values.
func (s search) String() string { return "gormcrypt.Eq(" + s.column + ", [REDACTED])" }

// GoString never shows the values.
func (s search) GoString() string { return s.String() }

// rewriteWhere rewrites equality conditions on encrypted columns and fails
// conditions that would send a plaintext of an encrypted column to the
// database.
func (p *Plugin) rewriteWhere(db *gorm.DB, pl *plan) {
	c, ok := db.Statement.Clauses["WHERE"]
	if !ok {
		return
	}
	where, ok := c.Expression.(clause.Where)
	if !ok {
		return
	}
	exprs, changed, err := p.rewriteExprs(db, pl, where.Exprs)
	if err != nil {
		db.AddError(err)
		return
	}
	if changed {
		c.Expression = clause.Where{Exprs: exprs}
		db.Statement.Clauses["WHERE"] = c
	}
}

func (p *Plugin) rewriteExprs(db *gorm.DB, pl *plan, exprs []clause.Expression) ([]clause.Expression, bool, error) {
	var out []clause.Expression
	for i, e := range exprs {
		ne, changed, err := p.rewriteExpr(db, pl, e)
		if err != nil {
			return nil, false, err
		}
		if changed && out == nil {
			out = make([]clause.Expression, len(exprs))
			copy(out, exprs[:i])
		}
		if out != nil {
			out[i] = ne
		}
	}
	if out == nil {
		return exprs, false, nil
	}
	return out, true, nil
}

// resolve finds the encrypted field a condition column names. Names
// compare the way the database compares them (case-insensitively, without
// quotes); a qualifier naming another registered table resolves there. A
// column it cannot resolve (an expression, an alias) is left alone: the
// statement guard refuses a plaintext compared with it.
func (p *Plugin) resolve(db *gorm.DB, pl *plan, col interface{}) (*cfield, clause.Column) {
	var c clause.Column
	switch x := col.(type) {
	case string:
		name := x
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			c.Table, name = strings.Trim(name[:i], "`\"[]"), name[i+1:]
		}
		c.Name = strings.Trim(name, "`\"[]")
	case clause.Column:
		if x.Raw {
			return nil, c
		}
		c = x
	default:
		return nil, c
	}
	if c.Table != "" && c.Table != clause.CurrentTable && !strings.EqualFold(c.Table, db.Statement.Table) && (pl == nil || !strings.EqualFold(c.Table, pl.s.Table)) {
		return p.reg.get(c.Table).lookupFold(c.Name), c
	}
	if cf := pl.lookup(c.Name); cf != nil {
		return cf, c
	}
	if tables := p.statementTables(db); len(tables) > 0 && (pl == nil || len(pl.fields) == 0) {
		return tables[0].lookupFold(c.Name), c
	}
	return nil, c
}

func (p *Plugin) rewriteExpr(db *gorm.DB, pl *plan, e clause.Expression) (clause.Expression, bool, error) {
	switch x := e.(type) {
	case search:
		cf, col := p.resolve(db, pl, x.column)
		if cf == nil {
			if x.not {
				return clause.Not(clause.IN{Column: col, Values: x.values}), true, nil
			}
			return clause.IN{Column: col, Values: x.values}, true, nil
		}
		ne, err := p.searchExpr(db, cf, col, x.values, x.not)
		return ne, true, err
	case clause.Eq:
		if cf, col := p.resolve(db, pl, x.Column); cf != nil {
			if x.Value == nil {
				return e, false, nil // IS NULL
			}
			ne, err := p.searchExpr(db, cf, col, []interface{}{x.Value}, false)
			return ne, true, err
		}
	case clause.Neq:
		if cf, col := p.resolve(db, pl, x.Column); cf != nil {
			if x.Value == nil {
				return e, false, nil
			}
			ne, err := p.searchExpr(db, cf, col, []interface{}{x.Value}, true)
			return ne, true, err
		}
	case clause.IN:
		if cf, col := p.resolve(db, pl, x.Column); cf != nil {
			ne, err := p.searchExpr(db, cf, col, x.Values, false)
			return ne, true, err
		}
	case clause.Like:
		return e, false, p.notSearchable(db, pl, x.Column, "LIKE")
	case clause.Gt:
		return e, false, p.notSearchable(db, pl, x.Column, ">")
	case clause.Gte:
		return e, false, p.notSearchable(db, pl, x.Column, ">=")
	case clause.Lt:
		return e, false, p.notSearchable(db, pl, x.Column, "<")
	case clause.Lte:
		return e, false, p.notSearchable(db, pl, x.Column, "<=")
	case clause.AndConditions:
		exprs, changed, err := p.rewriteExprs(db, pl, x.Exprs)
		return clause.AndConditions{Exprs: exprs}, changed, err
	case clause.OrConditions:
		exprs, changed, err := p.rewriteExprs(db, pl, x.Exprs)
		return clause.OrConditions{Exprs: exprs}, changed, err
	case clause.NotConditions:
		exprs, changed, err := p.rewriteExprs(db, pl, x.Exprs)
		return clause.NotConditions{Exprs: exprs}, changed, err
	case clause.Where:
		exprs, changed, err := p.rewriteExprs(db, pl, x.Exprs)
		return clause.Where{Exprs: exprs}, changed, err
	}
	return e, false, nil
}

func (p *Plugin) notSearchable(db *gorm.DB, pl *plan, col interface{}, op string) error {
	if cf, _ := p.resolve(db, pl, col); cf != nil {
		return cf.fail("query", "", ErrNotSearchable, fmt.Errorf("%s cannot be evaluated on ciphertexts; only equality is supported", op))
	}
	return nil
}

// searchExpr builds column IN (candidates) for the plaintext values.
func (p *Plugin) searchExpr(db *gorm.DB, cf *cfield, col clause.Column, values []interface{}, not bool) (clause.Expression, error) {
	ctx := db.Statement.Context
	if cf.Mode != Deterministic && cf.BlindIndex == "" {
		return nil, cf.fail("query", "", ErrNotSearchable, fmt.Errorf("randomized encryption; add deterministic or blindindex to the tag"))
	}
	out := make([]interface{}, 0, len(values))
	for _, v := range values {
		pt, null, err := cf.plainOf(v)
		if err != nil {
			return nil, cf.fail("search", "", ErrEncrypt, err)
		}
		if null {
			continue
		}
		b := cf.binding(ctx, "")
		if cf.Mode == Deterministic {
			cands, err := p.env.DeterministicCandidates(ctx, b, pt)
			if err != nil {
				return nil, cf.fail("search", "", ErrEncrypt, err)
			}
			for _, c := range cands {
				out = append(out, envelope.EncodeText(c))
			}
		} else {
			cands, err := p.env.BlindIndexCandidates(ctx, b, cf.BlindIndexSpec, pt)
			if err != nil {
				return nil, cf.fail("search", "", ErrEncrypt, err)
			}
			for _, c := range cands {
				out = append(out, hexString(c))
			}
		}
		clear(pt)
	}
	target := clause.Column{Table: col.Table, Name: cf.Column}
	if cf.Mode != Deterministic {
		target.Name = cf.BlindIndex
	}
	if target.Table == "" {
		target.Table = clause.CurrentTable
	}
	var e clause.Expression = clause.IN{Column: target, Values: out}
	if not {
		e = clause.Not(e)
	}
	return e, nil
}
