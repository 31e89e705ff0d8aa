package gormcrypt

import (
	"strings"
	"sync"
	"sync/atomic"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// registry is the plugin's one notion of "an encrypted column": every
// table of a model gormcrypt has prepared, with its encrypted columns,
// under its lower-cased name (see sqltok.go for why every comparison is
// case-insensitive). A statement that names a table instead of a model
// (db.Table("patients"), raw SQL) is checked against it.
//
// Tables are registered by name only, without a schema qualifier:
// "public.patients", `patients` and "PATIENTS" all mean the registered
// patients table. Register models at startup (AutoMigrate, Fields or
// Register): a table gormcrypt has not seen in this process is unknown to
// it.
type registry struct {
	mu     sync.RWMutex
	tables map[string]*tableEntry
	gen    atomic.Uint64 // bumped on every change; invalidates cached analyses
}

// tableEntry is one registered table.
type tableEntry struct {
	name string
	plan *plan              // the first model registered for the table
	cols map[string]*cfield // lower-cased column -> field; first declaration wins
	pks  []string           // primary key columns (lower-cased), in order
}

func (r *registry) add(pl *plan) {
	if pl == nil || len(pl.fields) == 0 {
		return
	}
	name := strings.ToLower(pl.s.Table)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tables == nil {
		r.tables = map[string]*tableEntry{}
	}
	e := r.tables[name]
	if e == nil {
		e = &tableEntry{name: name, plan: pl, cols: map[string]*cfield{}}
		for _, pk := range pl.pks {
			e.pks = append(e.pks, strings.ToLower(pk.DBName))
		}
		r.tables[name] = e
	}
	changed := false
	for _, cf := range pl.fields {
		c := strings.ToLower(cf.Column)
		if _, ok := e.cols[c]; !ok {
			e.cols[c] = cf
			changed = true
		}
	}
	if changed {
		r.gen.Add(1)
	}
}

func (r *registry) get(name string) *tableEntry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tables[normName(name)]
}

// normName is the registry's form of a name: lower case, without any
// quoting (also quotes inside quotes: db.Table(`"accts"`) makes GORM quote
// the quotes, and the statement must still count as naming accts).
func normName(name string) string {
	return strings.ToLower(strings.Trim(name, "`\"[] "))
}

func (r *registry) empty() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.tables) == 0
}

// isTable implements tableColumns.
func (r *registry) isTable(name string) bool { return r.get(name) != nil }

// encryptedColumn implements tableColumns.
func (r *registry) encryptedColumn(tables []string, column string) bool {
	return r.field(tables, column) != nil
}

// field returns the encrypted field column names in one of tables, or nil.
func (r *registry) field(tables []string, column string) *cfield {
	column = normName(column)
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, t := range tables {
		if e := r.tables[t]; e != nil {
			if cf := e.cols[column]; cf != nil {
				return cf
			}
		}
	}
	return nil
}

// lookupFold finds the encrypted field a column or Go field name names,
// the way the database compares names: case-insensitively, without quotes.
func (e *tableEntry) lookupFold(name string) *cfield {
	if e == nil {
		return nil
	}
	name = strings.ToLower(strings.Trim(name, "`\"[]"))
	if cf := e.cols[name]; cf != nil {
		return cf
	}
	for _, cf := range e.cols {
		if strings.EqualFold(cf.Name, name) {
			return cf
		}
	}
	return nil
}

// statementTables returns the registered tables a statement targets
// through db.Table(...) (its name, alias or expression) or its model.
func (p *Plugin) statementTables(db *gorm.DB) []*tableEntry {
	stmt := db.Statement
	var out []*tableEntry
	add := func(name string) {
		if e := p.reg.get(name); e != nil {
			for _, x := range out {
				if x == e {
					return
				}
			}
			out = append(out, e)
		}
	}
	if stmt.TableExpr != nil {
		for _, t := range tokenize(stmt.TableExpr.SQL, dialectOf(db.Dialector.Name()), false) {
			if t.kind == tName {
				for _, part := range t.parts {
					add(part)
				}
			}
		}
	}
	if stmt.Table != "" {
		add(stmt.Table)
	}
	if stmt.Schema != nil {
		add(stmt.Schema.Table)
	}
	return out
}

// targetPlan returns the plan a statement's values are encrypted with:
// the model's plan when it has encrypted fields, otherwise the plan
// registered for the table the statement names (db.Table("patients")
// writes a map exactly as db.Model(&Patient{}) would). A statement whose
// model has no encrypted fields but whose table is registered with some
// (a struct that is not the model, written into its table) gets the
// registered plan and, in conflict, wrote=true so the caller refuses.
func (p *Plugin) targetPlan(db *gorm.DB, pl *plan) (*plan, *tableEntry) {
	if pl != nil && len(pl.fields) > 0 {
		return pl, p.reg.get(pl.s.Table)
	}
	tables := p.statementTables(db)
	if len(tables) == 0 {
		return pl, nil
	}
	return tables[0].plan, tables[0]
}

// columnName returns the lower-cased, unquoted last part of a column
// reference.
func columnName(c clause.Column) string {
	name := c.Name
	if i := strings.LastIndexByte(name, '.'); i >= 0 && !c.Raw {
		name = name[i+1:]
	}
	return strings.ToLower(strings.Trim(name, "`\"[]"))
}
