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

// resolve finds the encrypted field a condition column names.
func (p *Plugin) resolve(db *gorm.DB, pl *plan, col interface{}) (*cfield, clause.Column) {
	var c clause.Column
	switch x := col.(type) {
	case string:
		name := x
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			c.Table, name = strings.Trim(name[:i], "`\""), name[i+1:]
		}
		c.Name = strings.Trim(name, "`\"")
	case clause.Column:
		if x.Raw {
			return nil, c
		}
		c = x
	default:
		return nil, c
	}
	target := pl
	if c.Table != "" && c.Table != clause.CurrentTable && c.Table != db.Statement.Table && (pl == nil || c.Table != pl.s.Table) {
		v, ok := p.tables.Load(c.Table)
		if !ok {
			return nil, c
		}
		target = v.(*plan)
	}
	return target.lookup(c.Name), c
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
	case clause.Expr:
		if len(x.Vars) > 0 {
			if col := comparedColumn(x.SQL, pl); col != nil {
				return e, false, col.fail("query", "", ErrUnsupportedPath,
					fmt.Errorf("a string condition compares the encrypted column with a parameter; use gormcrypt.Eq(%q, v) or a struct condition", col.Column))
			}
		}
	case clause.NamedExpr:
		if len(x.Vars) > 0 {
			if col := comparedColumn(x.SQL, pl); col != nil {
				return e, false, col.fail("query", "", ErrUnsupportedPath,
					fmt.Errorf("a string condition compares the encrypted column with a parameter; use gormcrypt.Eq(%q, v) or a struct condition", col.Column))
			}
		}
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

// comparedColumn reports an encrypted column of pl (or of any prepared
// table) that an SQL fragment compares with something: the column name
// followed by a comparison operator.
func comparedColumn(sql string, pl *plan) *cfield {
	if pl == nil || len(pl.byCol) == 0 {
		return nil
	}
	toks := sqlTokens(sql)
	for i, t := range toks {
		cf := pl.byCol[t]
		if cf == nil || i+1 >= len(toks) {
			continue
		}
		switch strings.ToUpper(toks[i+1]) {
		case "=", "<>", "!=", "<", ">", "<=", ">=", "IN", "LIKE", "ILIKE", "BETWEEN", "REGEXP", "RLIKE", "GLOB", "<=>":
			return cf
		}
	}
	return nil
}

// sqlTokens splits SQL into identifiers (unquoted, last part of a dotted
// name), operators and other single characters; string literals are
// skipped.
func sqlTokens(sql string) []string {
	var toks []string
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '\'':
			j := i + 1
			for j < len(sql) && sql[j] != '\'' {
				j++
			}
			i = j + 1
			toks = append(toks, "'")
		case c == '"' || c == '`':
			j := i + 1
			for j < len(sql) && sql[j] != c {
				j++
			}
			toks = append(toks, sql[i+1:min(j, len(sql))])
			i = j + 1
		case isIdent(c):
			j := i
			for j < len(sql) && (isIdent(sql[j]) || sql[j] >= '0' && sql[j] <= '9') {
				j++
			}
			toks = append(toks, sql[i:j])
			i = j
		case c == '.':
			// "t.col": drop the qualifier so the column is the token.
			if len(toks) > 0 {
				toks = toks[:len(toks)-1]
			}
			i++
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case strings.IndexByte("<>!=", c) >= 0:
			j := i
			for j < len(sql) && strings.IndexByte("<>!=", sql[j]) >= 0 {
				j++
			}
			toks = append(toks, sql[i:j])
			i = j
		default:
			toks = append(toks, sql[i:i+1])
			i++
		}
	}
	return toks
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
