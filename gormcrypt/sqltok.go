package gormcrypt

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The SQL tokenizer behind the statement guard. It does not parse SQL; it
// splits it into the tokens the guard reasons about (names, values,
// operators, parentheses) the way the database would, erring on the side of
// seeing a name where the database might:
//
//   - Every identifier is compared case-insensitively, quoted or not, on
//     every dialect. That is a superset of what each database treats as the
//     same name (PostgreSQL folds unquoted names to lower case, MySQL and
//     MariaDB compare column names case-insensitively, SQLite compares all
//     names case-insensitively), so any spelling the database resolves to an
//     encrypted column is recognized. A distinct, quoted, mixed-case
//     PostgreSQL column beside an encrypted one of the same letters is
//     treated as encrypted too.
//   - Quoting: "x" (PostgreSQL, SQLite; also a string literal on MySQL, so
//     there it counts as both), `x` (MySQL, SQLite), [x] (SQLite),
//     U&"x" with \XXXX escapes (PostgreSQL). Qualified names (s.t.c) keep
//     every part.
//   - Comments (--, /* */ nested on PostgreSQL, # on MySQL) separate tokens
//     and are dropped, except MySQL's executable /*! ... */ comments, whose
//     text is SQL.
//   - String literals: '...' with '' (and, on MySQL, backslash escapes:
//     the guard checks MySQL statements both with and without them, because
//     NO_BACKSLASH_ESCAPES changes where a string ends), E'...' with
//     backslash escapes and $tag$...$tag$ on PostgreSQL, X'..', B'..', N'..'.
//   - Placeholders: ? (MySQL, SQLite), $N (PostgreSQL, SQLite), and the named
//     forms :n, @n, $n, ?N, whose argument position is not known.

type tokKind uint8

const (
	tName   tokKind = iota // identifier or keyword, possibly qualified
	tString                // string literal (text holds its value)
	tNumber                // numeric literal
	tParam                 // placeholder
	tOp                    // operator
	tLParen
	tRParen
	tComma
	tSemi
)

// token is one lexical unit. For tName, parts holds each part of a
// qualified name, lower-cased, and text the last part; quoted reports
// whether any part was quoted (quoted names are never keywords). For a
// MySQL double-quoted token, kind is tName and alsoString is set.
type token struct {
	kind       tokKind
	text       string
	parts      []string
	quoted     bool
	alsoString bool
	param      int // tParam: argument index, -1 when unknown
	depth      int // parenthesis depth
}

func (t token) keyword(k string) bool {
	return t.kind == tName && !t.quoted && len(t.parts) == 1 && t.text == k
}

type dialect uint8

const (
	dialectOther dialect = iota
	dialectPostgres
	dialectMySQL
	dialectSQLite
)

func dialectOf(name string) dialect {
	switch name {
	case "postgres", "pgx", "cockroachdb":
		return dialectPostgres
	case "mysql", "mariadb", "tidb":
		return dialectMySQL
	case "sqlite", "sqlite3":
		return dialectSQLite
	}
	return dialectOther
}

type lexer struct {
	src       string
	d         dialect
	backslash bool // MySQL: backslash escapes in '...' strings
	toks      []token
	depth     int
	nextParam int
}

// tokenize splits sql for dialect d. With backslash, '...' strings honour
// backslash escapes (MySQL's default).
func tokenize(sql string, d dialect, backslash bool) []token {
	lx := &lexer{src: sql, d: d, backslash: backslash}
	lx.run(0, len(sql))
	return lx.toks
}

func (lx *lexer) emit(t token) {
	t.depth = lx.depth
	switch t.kind {
	case tLParen:
		lx.depth++
	case tRParen:
		if lx.depth > 0 {
			lx.depth--
		}
		t.depth = lx.depth
	}
	lx.toks = append(lx.toks, t)
}

func isIdentStart(r rune) bool {
	return r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= 0x80 && (unicode.IsLetter(r) || unicode.IsMark(r))
}

func isIdentPart(r rune) bool {
	return isIdentStart(r) || r >= '0' && r <= '9' || r == '$' || r >= 0x80 && unicode.IsDigit(r)
}

const opChars = "+-*/<>=~!@#%^&|`?:"

func (lx *lexer) run(i, end int) {
	s := lx.src
	for i < end {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < end && s[i+1] == '-':
			i = lineEnd(s, i, end)
		case c == '#' && lx.d == dialectMySQL:
			i = lineEnd(s, i, end)
		case c == '/' && i+1 < end && s[i+1] == '*':
			i = lx.blockComment(i, end)
		case c == '\'':
			val, j := lx.quoted(i, end, '\'', lx.backslash && lx.d == dialectMySQL)
			lx.emit(token{kind: tString, text: val})
			i = j
		case (c == 'E' || c == 'e') && i+1 < end && s[i+1] == '\'' && lx.d == dialectPostgres:
			val, j := lx.quoted(i+1, end, '\'', true)
			lx.emit(token{kind: tString, text: val})
			i = j
		case (c == 'X' || c == 'x' || c == 'B' || c == 'b' || c == 'N' || c == 'n') && i+1 < end && s[i+1] == '\'':
			val, j := lx.quoted(i+1, end, '\'', lx.backslash && lx.d == dialectMySQL)
			lx.emit(token{kind: tString, text: val})
			i = j
		case (c == 'U' || c == 'u') && i+2 < end && s[i+1] == '&' && s[i+2] == '"' && lx.d == dialectPostgres:
			val, j := lx.quoted(i+2, end, '"', false)
			i = lx.name(unescapeUnicode(val), true, false, j, end)
		case c == '"':
			val, j := lx.quoted(i, end, '"', false)
			i = lx.name(val, true, lx.d == dialectMySQL, j, end)
		case c == '`':
			val, j := lx.quoted(i, end, '`', false)
			i = lx.name(val, true, false, j, end)
		case c == '[' && lx.d != dialectPostgres && lx.d != dialectMySQL:
			j := strings.IndexByte(s[i+1:end], ']')
			if j < 0 {
				j = end - i - 1
			}
			i = lx.name(s[i+1:i+1+j], true, false, min(i+2+j, end), end)
		case c == '$' && lx.d == dialectPostgres && i+1 < end && (s[i+1] == '$' || isIdentStart(rune(s[i+1]))) && dollarTag(s[i:end]) != "":
			tag := dollarTag(s[i:end])
			body := i + len(tag)
			k := strings.Index(s[body:end], tag)
			if k < 0 {
				lx.emit(token{kind: tString, text: s[body:end]})
				i = end
			} else {
				lx.emit(token{kind: tString, text: s[body : body+k]})
				i = body + k + len(tag)
			}
		case c == '$' && i+1 < end && s[i+1] >= '0' && s[i+1] <= '9':
			j := i + 1
			for j < end && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			n, err := strconv.Atoi(s[i+1 : j])
			idx := -1
			if err == nil && n >= 1 {
				idx = n - 1
			}
			lx.emit(token{kind: tParam, param: idx})
			i = j
		case c == '?' && lx.d != dialectPostgres:
			j := i + 1
			for j < end && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			if j > i+1 { // ?NNN
				lx.emit(token{kind: tParam, param: -1})
			} else {
				lx.emit(token{kind: tParam, param: lx.nextParam})
				lx.nextParam++
			}
			i = j
		case (c == ':' || c == '@' || c == '$') && i+1 < end && isIdentStart(rune(s[i+1])) && !(c == ':' && i > 0 && s[i-1] == ':'):
			// :name, @name, $name: a named placeholder (or a MySQL user
			// variable): position unknown.
			j := i + 1
			for j < end {
				r, size := utf8.DecodeRuneInString(s[j:])
				if !isIdentPart(r) {
					break
				}
				j += size
			}
			lx.emit(token{kind: tParam, param: -1})
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < end && s[i+1] >= '0' && s[i+1] <= '9':
			j := i
			for j < end && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' || s[j] == 'x' || s[j] == 'X' ||
				s[j] >= 'a' && s[j] <= 'f' || s[j] >= 'A' && s[j] <= 'F' || s[j] == '_' ||
				(s[j] == '+' || s[j] == '-') && j > i && (s[j-1] == 'e' || s[j-1] == 'E')) {
				j++
			}
			lx.emit(token{kind: tNumber, text: s[i:j]})
			i = j
		case c == '(':
			lx.emit(token{kind: tLParen})
			i++
		case c == ')':
			lx.emit(token{kind: tRParen})
			i++
		case c == ',':
			lx.emit(token{kind: tComma})
			i++
		case c == ';':
			lx.emit(token{kind: tSemi})
			i++
		case c == '.':
			i++ // a stray dot (qualified names are joined in name)
		case strings.IndexByte(opChars, c) >= 0:
			j := i + 1
			for j < end && strings.IndexByte(opChars, s[j]) >= 0 && !(s[j] == '-' && j+1 < end && s[j+1] == '-') && !(s[j] == '/' && j+1 < end && s[j+1] == '*') {
				if s[j] == '?' && lx.d != dialectPostgres {
					break // "=?" is an operator and a placeholder
				}
				j++
			}
			lx.emit(token{kind: tOp, text: s[i:j]})
			i = j
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if isIdentStart(r) {
				j := i + size
				for j < end {
					r2, sz := utf8.DecodeRuneInString(s[j:])
					if !isIdentPart(r2) {
						break
					}
					j += sz
				}
				i = lx.name(s[i:j], false, false, j, end)
				continue
			}
			lx.emit(token{kind: tOp, text: s[i : i+size]})
			i += size
		}
	}
}

func lineEnd(s string, i, end int) int {
	j := strings.IndexByte(s[i:end], '\n')
	if j < 0 {
		return end
	}
	return i + j + 1
}

// blockComment skips /* ... */ starting at i (nested on PostgreSQL). A MySQL
// /*! ... */ comment is SQL: its text is tokenized.
func (lx *lexer) blockComment(i, end int) int {
	s := lx.src
	if lx.d == dialectMySQL && i+2 < end && s[i+2] == '!' || lx.d == dialectMySQL && i+2 < end && s[i+2] == '+' {
		j := strings.Index(s[i+3:end], "*/")
		inner := end
		next := end
		if j >= 0 {
			inner, next = i+3+j, i+3+j+2
		}
		k := i + 3
		for k < inner && s[k] >= '0' && s[k] <= '9' { // /*!50100 version */
			k++
		}
		lx.run(k, inner)
		return next
	}
	nest := 1
	j := i + 2
	for j < end && nest > 0 {
		switch {
		case s[j] == '*' && j+1 < end && s[j+1] == '/':
			nest--
			j += 2
		case s[j] == '/' && j+1 < end && s[j+1] == '*' && lx.d == dialectPostgres:
			nest++
			j += 2
		default:
			j++
		}
	}
	return j
}

// quoted reads a quoted run starting at the quote at i, with the quote
// doubled as an escape (and backslash escapes when bs). It returns the
// unescaped value and the index after the closing quote (end if unclosed).
func (lx *lexer) quoted(i, end int, q byte, bs bool) (string, int) {
	s := lx.src
	var b strings.Builder
	j := i + 1
	for j < end {
		c := s[j]
		switch {
		case bs && c == '\\' && j+1 < end:
			b.WriteByte(s[j+1])
			j += 2
		case c == q && j+1 < end && s[j+1] == q:
			b.WriteByte(q)
			j += 2
		case c == q:
			return b.String(), j + 1
		default:
			b.WriteByte(c)
			j++
		}
	}
	return b.String(), end
}

// name emits a name token starting with first (already read, ending at j)
// and joins the parts of a qualified name (a . b . c, with any quoting).
func (lx *lexer) name(first string, quoted, alsoString bool, j, end int) int {
	s := lx.src
	parts := []string{strings.ToLower(first)}
	for {
		k := j
		for k < end && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r') {
			k++
		}
		if k >= end || s[k] != '.' {
			break
		}
		k++
		for k < end && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r') {
			k++
		}
		if k >= end {
			break
		}
		var part string
		switch c := s[k]; {
		case c == '"' || c == '`':
			part, k = lx.quoted(k, end, c, false)
			quoted = true
			alsoString = false
		case c == '[' && lx.d != dialectPostgres && lx.d != dialectMySQL:
			e := strings.IndexByte(s[k+1:end], ']')
			if e < 0 {
				e = end - k - 1
			}
			part, k = s[k+1:k+1+e], min(k+2+e, end)
			quoted = true
		case c == '*':
			part, k = "*", k+1
		default:
			r, size := utf8.DecodeRuneInString(s[k:])
			if !isIdentStart(r) {
				return j
			}
			e := k + size
			for e < end {
				r2, sz := utf8.DecodeRuneInString(s[e:])
				if !isIdentPart(r2) {
					break
				}
				e += sz
			}
			part, k = s[k:e], e
		}
		parts = append(parts, strings.ToLower(part))
		j = k
		alsoString = false
	}
	lx.emit(token{kind: tName, text: parts[len(parts)-1], parts: parts, quoted: quoted, alsoString: alsoString})
	return j
}

// dollarTag returns the $tag$ opening s, or "".
func dollarTag(s string) string {
	if len(s) < 2 || s[0] != '$' {
		return ""
	}
	for j := 1; j < len(s); j++ {
		c := s[j]
		if c == '$' {
			return s[:j+1]
		}
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || j > 1 && c >= '0' && c <= '9' || c >= 0x80) {
			return ""
		}
	}
	return ""
}

// unescapeUnicode decodes PostgreSQL U&"..." escapes (\XXXX, \+XXXXXX, \\).
func unescapeUnicode(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case s[i+1] == '\\':
			b.WriteByte('\\')
			i++
		case s[i+1] == '+' && i+8 <= len(s):
			if n, err := strconv.ParseUint(s[i+2:i+8], 16, 32); err == nil {
				b.WriteRune(rune(n))
				i += 7
				continue
			}
			b.WriteByte(s[i])
		case i+5 <= len(s):
			if n, err := strconv.ParseUint(s[i+1:i+5], 16, 32); err == nil {
				b.WriteRune(rune(n))
				i += 4
				continue
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
