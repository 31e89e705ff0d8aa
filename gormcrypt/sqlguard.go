package gormcrypt

import (
	"database/sql/driver"
	"reflect"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// The statement guard: every SQL statement GORM sends through a *gorm.DB
// with the plugin passes through it (see pool.go), whatever built it
// (Create, Updates, Where, Raw, Exec, Table, ...). It finds the encrypted
// columns the statement names (any registered table named anywhere in it)
// and the values that reach them: the right-hand side of an assignment or
// comparison, an argument of a function applied to the column, the
// matching element of an INSERT's VALUES tuple. Each such value must be a
// ciphertext or NULL; anything else (a plaintext parameter, a literal in
// the SQL text, a placeholder whose argument is unknown) refuses the
// statement before it reaches the database or the SQL log.
//
// The guard over-approximates on purpose: operand ranges extend to the
// nearest AND/OR/comma/clause keyword, subqueries and CASE expressions
// inside an operand count as part of it, and an INSERT without a column
// list (or with VALUES it cannot line up) requires every value to be a
// ciphertext. A legitimate statement it refuses can be written through the
// model, or run on db.DB() (database/sql), which gormcrypt does not see.

// analysis is what the guard learned about one SQL text; it is cached per
// text and reused with each statement's arguments.
type analysis struct {
	tables []string // registered tables the SQL names, lower-case, sorted by first use
	// needCT maps an argument index to the encrypted column it reaches.
	needCT map[int]string
	// allArgs: value positions could not be lined up; every argument must
	// be a ciphertext or NULL (column names the reason).
	allArgs    bool
	allArgsCol string
	// problem: a value in the SQL text itself (a literal, a placeholder of
	// unknown position) reaches this encrypted column: always refused.
	problem string
}

// tableColumns tells the guard which tables are registered and which of
// their columns are encrypted (lower-case names).
type tableColumns interface {
	isTable(name string) bool
	encryptedColumn(tables []string, column string) bool
}

var boundaryWords = map[string]bool{
	"and": true, "or": true, "where": true, "set": true, "on": true, "having": true,
	"when": true, "then": true, "else": true, "select": true, "from": true,
	"join": true, "using": true, "values": true, "value": true, "returning": true,
	"order": true, "group": true, "limit": true, "offset": true, "union": true,
	"except": true, "intersect": true, "into": true, "update": true, "delete": true,
	"insert": true, "replace": true, "do": true, "window": true, "fetch": true,
	"for": true, "as": true, "with": true, "conflict": true, "duplicate": true,
}

var comparisonWords = map[string]bool{
	"like": true, "ilike": true, "in": true, "between": true, "regexp": true,
	"rlike": true, "glob": true, "match": true, "similar": true, "is": true,
	"any": false, "all": false, "some": false,
}

var comparisonOps = map[string]bool{
	"=": true, "==": true, "<>": true, "!=": true, "<": true, ">": true, "<=": true,
	">=": true, "<=>": true, "~": true, "~*": true, "!~": true, "!~*": true,
	"~~": true, "~~*": true, "!~~": true, "!~~*": true, "@>": true, "<@": true,
	"&&": true, "@@": true, "^@": true,
}

// analyzeSQL tokenizes sql for d and analyses it. On MySQL it analyses
// both readings of backslashes in strings and merges them.
func analyzeSQL(sql string, d dialect, reg tableColumns) *analysis {
	a := analyzeTokens(tokenize(sql, d, true), reg)
	if d == dialectMySQL {
		a.merge(analyzeTokens(tokenize(sql, d, false), reg))
	}
	return a
}

func (a *analysis) merge(b *analysis) {
	for _, t := range b.tables {
		if !containsStr(a.tables, t) {
			a.tables = append(a.tables, t)
		}
	}
	for i, c := range b.needCT {
		if a.needCT == nil {
			a.needCT = map[int]string{}
		}
		a.needCT[i] = c
	}
	if b.allArgs && !a.allArgs {
		a.allArgs, a.allArgsCol = true, b.allArgsCol
	}
	if a.problem == "" {
		a.problem = b.problem
	}
}

func containsStr(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

type analyzer struct {
	toks     []token
	reg      tableColumns
	a        *analysis
	match    []int // matching parenthesis / CASE-END index, -1 if none
	mentions []bool
}

func analyzeTokens(toks []token, reg tableColumns) *analysis {
	a := &analysis{}
	for _, t := range toks {
		if t.kind != tName {
			continue
		}
		for _, p := range t.parts {
			if reg.isTable(p) && !containsStr(a.tables, normName(p)) {
				a.tables = append(a.tables, normName(p))
			}
		}
	}
	if len(a.tables) == 0 {
		return a
	}
	// Each statement of a multi-statement text on its own.
	start := 0
	for i := 0; i <= len(toks); i++ {
		if i < len(toks) && toks[i].kind != tSemi {
			continue
		}
		if seg := toks[start:i]; len(seg) > 0 && !isDDL(seg) {
			analyzeStatement(seg, reg, a)
		}
		start = i + 1
	}
	return a
}

func analyzeStatement(toks []token, reg tableColumns, a *analysis) {
	z := &analyzer{toks: toks, reg: reg, a: a, match: matchGroups(toks), mentions: make([]bool, len(toks))}
	any := false
	for i, t := range toks {
		if t.kind == tName && reg.encryptedColumn(a.tables, t.text) {
			z.mentions[i] = true
			any = true
		}
	}
	if !any {
		z.inserts() // an INSERT without a column list names no column
		return
	}
	for i, t := range toks {
		switch {
		case t.kind == tOp && comparisonOps[t.text], t.kind == tName && !z.mentions[i] && t.keyword(t.text) && comparisonWords[t.text]:
			z.operator(i)
		}
	}
	for i := range toks {
		if z.mentions[i] {
			z.functionGroups(i)
		}
	}
	z.inserts()
}

// ddlWords start statements that define rather than move data: their
// parentheses are column definitions (varchar(16)), not calls.
var ddlWords = map[string]bool{
	"create": true, "alter": true, "drop": true, "comment": true, "truncate": true,
	"grant": true, "revoke": true, "rename": true, "pragma": true, "analyze": true,
	"vacuum": true, "reindex": true, "cluster": true, "show": true, "describe": true,
	"savepoint": true, "release": true, "begin": true, "commit": true, "rollback": true,
}

// isDDL reports a statement that defines schema (its first word).
func isDDL(toks []token) bool {
	return len(toks) > 0 && toks[0].kind == tName && !toks[0].quoted && ddlWords[toks[0].text]
}

// matchGroups pairs parentheses and CASE ... END.
func matchGroups(toks []token) []int {
	m := make([]int, len(toks))
	for i := range m {
		m[i] = -1
	}
	var parens, cases []int
	for i, t := range toks {
		switch {
		case t.kind == tLParen:
			parens = append(parens, i)
		case t.kind == tRParen:
			if n := len(parens); n > 0 {
				m[i], m[parens[n-1]] = parens[n-1], i
				parens = parens[:n-1]
			}
		case t.keyword("case"):
			cases = append(cases, i)
		case t.keyword("end"):
			if n := len(cases); n > 0 {
				m[i], m[cases[n-1]] = cases[n-1], i
				cases = cases[:n-1]
			}
		}
	}
	return m
}

func (z *analyzer) boundary(i int) bool {
	t := z.toks[i]
	switch t.kind {
	case tComma, tSemi:
		return true
	case tName:
		return !z.mentions[i] && t.keyword(t.text) && boundaryWords[t.text]
	}
	return false
}

// operator checks the operands of the comparison or assignment at i.
func (z *analyzer) operator(i int) {
	t := z.toks[i]
	// Left operand.
	lo := i
	for j := i - 1; j >= 0; j-- {
		tj := z.toks[j]
		if tj.kind == tLParen || z.boundary(j) {
			break
		}
		if (tj.kind == tRParen || tj.keyword("end")) && z.match[j] >= 0 && z.match[j] < j {
			j = z.match[j]
		}
		lo = j
	}
	// Right operand.
	hi := i + 1
	between := t.keyword("between")
	for j := i + 1; j < len(z.toks); j++ {
		tj := z.toks[j]
		if tj.kind == tRParen {
			break
		}
		if z.boundary(j) {
			if between && tj.keyword("and") {
				between = false
			} else if !(tj.keyword("from") && j > 0 && z.toks[j-1].keyword("distinct")) {
				break
			}
		}
		if (tj.kind == tLParen || tj.keyword("case")) && z.match[j] > j {
			j = z.match[j]
		}
		hi = j + 1
	}
	col := ""
	for j := lo; j < hi; j++ {
		if z.mentions[j] {
			col = z.toks[j].text
			break
		}
	}
	if col == "" {
		return
	}
	z.values(lo, hi, col)
}

// functionGroups checks the arguments of every function call enclosing the
// mention at i: lower(ssn) = ?, instr(ssn, ?), coalesce(notes, ?).
func (z *analyzer) functionGroups(i int) {
	for j := i - 1; j >= 0; j-- {
		t := z.toks[j]
		if t.kind == tRParen && z.match[j] >= 0 && z.match[j] < j {
			j = z.match[j]
			continue
		}
		if t.kind != tLParen || z.match[j] < i {
			continue
		}
		if j == 0 || z.toks[j-1].kind != tName || z.toks[j-1].keyword(z.toks[j-1].text) && boundaryWords[z.toks[j-1].text] || z.toks[j-1].keyword("in") {
			continue // a grouping or a list, not a call
		}
		if z.isInsertColumnList(j) {
			continue
		}
		z.values(j, z.match[j]+1, z.toks[i].text)
	}
}

// isInsertColumnList reports whether the parenthesis at j opens the column
// list of an INSERT/REPLACE (INTO name ( ... )).
func (z *analyzer) isInsertColumnList(j int) bool {
	if j < 2 {
		return false
	}
	p := z.toks[j-2]
	return p.keyword("into") || p.keyword("insert") || p.keyword("replace") || p.keyword("ignore")
}

// values records every value in toks[lo:hi] as reaching col.
func (z *analyzer) values(lo, hi int, col string) {
	for j := lo; j < hi; j++ {
		z.value(j, col)
	}
}

func (z *analyzer) value(j int, col string) {
	t := z.toks[j]
	switch t.kind {
	case tParam:
		if t.param < 0 {
			z.problemAt(col, "a placeholder whose argument gormcrypt cannot see")
			return
		}
		if z.a.needCT == nil {
			z.a.needCT = map[int]string{}
		}
		z.a.needCT[t.param] = col
	case tString:
		if !envelope.IsText(t.text) {
			z.problemAt(col, "a literal in the SQL text")
		}
	case tNumber:
		z.problemAt(col, "a literal in the SQL text")
	case tName:
		if t.alsoString && !z.mentions[j] && !envelope.IsText(t.text) && len(t.parts) == 1 {
			z.problemAt(col, "a literal in the SQL text")
		}
		if t.keyword("true") || t.keyword("false") {
			z.problemAt(col, "a literal in the SQL text")
		}
	}
}

func (z *analyzer) problemAt(col, what string) {
	if z.a.problem == "" {
		z.a.problem = col + ": " + what
	}
}

// inserts lines up INSERT/REPLACE column lists with their VALUES tuples.
func (z *analyzer) inserts() {
	toks := z.toks
	for i := 0; i < len(toks); i++ {
		if !(toks[i].keyword("insert") || toks[i].keyword("replace")) || toks[i].depth != 0 && !(i > 0 && toks[i-1].kind == tLParen) {
			continue
		}
		// The target: the first name after INTO (or after the verb and its
		// modifiers on MySQL).
		j := i + 1
		for j < len(toks) && toks[j].kind == tName && toks[j].keyword(toks[j].text) &&
			(toks[j].text == "into" || toks[j].text == "ignore" || toks[j].text == "or" || toks[j].text == "low_priority" ||
				toks[j].text == "delayed" || toks[j].text == "high_priority" || toks[j].text == "rollback" ||
				toks[j].text == "abort" || toks[j].text == "fail" || toks[j].text == "replace") {
			j++
		}
		if j >= len(toks) || toks[j].kind != tName {
			z.strict("an INSERT whose target gormcrypt cannot read")
			continue
		}
		target := toks[j]
		j++
		if j < len(toks) && toks[j].keyword("as") { // INSERT INTO t AS alias (PostgreSQL)
			j += 2
		} else if j < len(toks) && toks[j].kind == tName && !toks[j].keyword(toks[j].text) {
			j++ // alias
		}
		inScope := false
		for _, p := range target.parts {
			if z.reg.isTable(p) {
				inScope = true
			}
		}
		var cols []int // token index of each column name, -1 if not a plain name
		if j < len(toks) && toks[j].kind == tLParen && z.match[j] > j {
			if j+1 < len(toks) && (toks[j+1].keyword("select") || toks[j+1].keyword("with")) {
				if inScope {
					z.strict("an INSERT ... SELECT into a table with encrypted columns")
				}
				continue
			}
			end := z.match[j]
			k := j + 1
			for k < end {
				e := k
				for e < end && !(toks[e].kind == tComma && toks[e].depth == toks[j].depth+1) {
					e++
				}
				if e == k+1 && toks[k].kind == tName {
					cols = append(cols, k)
				} else {
					cols = append(cols, -1)
				}
				k = e + 1
			}
			j = end + 1
		} else if inScope {
			if j < len(toks) && toks[j].keyword("set") {
				continue // MySQL INSERT ... SET col = value: assignments
			}
			if j+1 < len(toks) && toks[j].keyword("default") && toks[j+1].keyword("values") {
				continue
			}
			z.strict("an INSERT without a column list into a table with encrypted columns")
			continue
		}
		encrypted := false
		for _, c := range cols {
			if c >= 0 && z.mentions[c] {
				encrypted = true
			}
		}
		if !encrypted {
			continue
		}
		if j >= len(toks) || !(toks[j].keyword("values") || toks[j].keyword("value")) {
			z.strict("an INSERT ... SELECT into encrypted columns")
			continue
		}
		j++
		for j < len(toks) && toks[j].kind == tLParen && z.match[j] > j {
			end := z.match[j]
			n := 0
			k := j + 1
			for k <= end {
				e := k
				for e < end && !(toks[e].kind == tComma && toks[e].depth == toks[j].depth+1) {
					e++
				}
				if n >= len(cols) {
					z.strict("an INSERT whose VALUES do not line up with its columns")
					break
				}
				if c := cols[n]; c < 0 || z.mentions[c] {
					col := ""
					if c >= 0 {
						col = toks[c].text
					}
					if col == "" {
						z.strict("an INSERT column list gormcrypt cannot read")
					} else {
						z.values(k, e, col)
					}
				}
				n++
				k = e + 1
			}
			if n != len(cols) {
				z.strict("an INSERT whose VALUES do not line up with its columns")
			}
			j = end + 1
			if j < len(toks) && toks[j].kind == tComma {
				j++
			}
		}
	}
}

// strict marks the statement as one whose value positions are unclear:
// every argument must be a ciphertext, and any literal is refused.
func (z *analyzer) strict(why string) {
	if !z.a.allArgs {
		z.a.allArgs, z.a.allArgsCol = true, why
	}
	for j, t := range z.toks {
		switch t.kind {
		case tString, tNumber:
			if t.kind == tNumber || !envelope.IsText(t.text) {
				z.problemAt(why, "a literal in the SQL text")
			}
		case tParam:
			if t.param < 0 {
				z.problemAt(why, "a placeholder whose argument gormcrypt cannot see")
			}
		case tName:
			if t.alsoString && !z.mentions[j] {
				z.problemAt(why, "a literal in the SQL text")
			}
		}
	}
}

// refusal returns why the statement must not run with args, or "".
func (a *analysis) refusal(args []any) string {
	if a.problem != "" {
		return a.problem
	}
	if a.allArgs {
		for _, v := range args {
			if !ciphertextOrNull(v) {
				return a.allArgsCol + ": a parameter that is not a ciphertext"
			}
		}
	}
	for i, col := range a.needCT {
		if i >= len(args) {
			continue // the driver will refuse the statement itself
		}
		if !ciphertextOrNull(args[i]) {
			return col + ": a parameter that is not a ciphertext"
		}
	}
	return ""
}

// ciphertextOrNull reports whether an argument is NULL or a fieldcrypt
// ciphertext (text form, or the binary form for byte slices).
func ciphertextOrNull(v any) bool {
	for range 4 {
		dv, ok := v.(driver.Valuer)
		if !ok {
			break
		}
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Ptr && rv.IsNil() {
			return true
		}
		x, err := dv.Value()
		if err != nil {
			return false
		}
		v = x
	}
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return envelope.IsText(x)
	case []byte:
		return x == nil || envelope.IsCiphertext(x)
	case *string:
		return x == nil || envelope.IsText(*x)
	case *[]byte:
		return x == nil || *x == nil || envelope.IsCiphertext(*x)
	}
	rv := reflect.ValueOf(v)
	return (rv.Kind() == reflect.Ptr || rv.Kind() == reflect.Interface) && rv.IsNil()
}
