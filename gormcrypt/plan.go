package gormcrypt

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Encryption is how a field is encrypted.
type Encryption string

// Mode is the former name of Encryption (reencrypt.Mode is what a
// re-encryption does, an unrelated thing).
//
// Deprecated: use Encryption; kept for one release.
type Mode = Encryption

// The encryptions.
const (
	// Randomized: AES-256-GCM under a fresh data key per value (the
	// default). Equal plaintexts give different ciphertexts; not searchable
	// unless the field also has a blind index.
	Randomized Encryption = "randomized"
	// Deterministic: AES-SIV under a search key. Equal plaintexts (in the
	// same table, column and tenant) give equal ciphertexts, so equality
	// queries work on the column itself. Never row-bound.
	Deterministic Encryption = "deterministic"
)

// Field describes one encrypted field of a model, as the CLI and tools need
// it to walk encrypted columns.
type Field struct {
	Model      string         // Go type name of the model, e.g. "Patient"
	Name       string         // Go field name, e.g. "SSN"
	Table      string         // table name, e.g. "patients"
	Column     string         // column name, e.g. "ssn"
	Class      envelope.Class // classification (key scope)
	Mode       Encryption     // Randomized or Deterministic
	BlindIndex string         // blind index column (e.g. "ssn_bidx"), "" if none
	// BlindIndexSpec is the blind index configuration (zero if none).
	BlindIndexSpec envelope.BlindIndex
	Unique         bool // the blind index column has a unique index
	Migrate        bool // legacy plaintext values are accepted on read
	// Unbound: a value written by a Create whose primary key the database
	// generates is not sealed again once the key is known (see rebind.go);
	// it is bound to its row from its first update.
	Unbound bool
}

type kind uint8

const (
	kString kind = iota
	kBytes
	kInt
	kUint
	kBool
	kFloat
	kTime
	kJSON
)

var (
	timeType   = reflect.TypeOf(time.Time{})
	stringType = reflect.TypeOf("")
)

// cfield is the per-field plan: everything computed once per schema so the
// per-value work is a type switch and the crypto.
type cfield struct {
	Field
	p       *Plugin
	pl      *plan
	sf      *schema.Field
	kind    kind
	base    reflect.Type // field type without the pointer
	ptr     bool
	origSet func(context.Context, reflect.Value, interface{}) error
}

// plan is the per-schema plan.
type plan struct {
	s      *schema.Schema
	fields []*cfield
	byCol  map[string]*cfield // column -> field
	byBidx map[string]*cfield // blind index column -> field
	// byFold and bidxFold hold the same under lower-cased names: names
	// in statements compare the way the database compares them.
	byFold, bidxFold map[string]*cfield
	pks              []*schema.Field
	// treeEncrypted: this schema or one reachable through relationships
	// (Joins, Preload) has encrypted fields; valid once treeDone.
	treeEncrypted, treeDone atomic.Bool
}

// lookup finds the encrypted field a column or Go field name names,
// case-insensitively and without quotes.
func (pl *plan) lookup(name string) *cfield {
	if pl == nil {
		return nil
	}
	if cf := pl.byCol[name]; cf != nil {
		return cf
	}
	if cf := pl.col(name); cf != nil {
		return cf
	}
	for _, cf := range pl.fields {
		if strings.EqualFold(cf.Name, strings.Trim(name, "`\"[]")) {
			return cf
		}
	}
	return nil
}

// col returns the encrypted field stored in column name (any case, quotes
// and qualifier ignored), or nil.
func (pl *plan) col(name string) *cfield {
	if pl == nil {
		return nil
	}
	if cf := pl.byCol[name]; cf != nil {
		return cf
	}
	return pl.byFold[columnName(clause.Column{Name: name})]
}

// bidxCol returns the field whose blind index is column name, or nil.
func (pl *plan) bidxCol(name string) *cfield {
	if pl == nil {
		return nil
	}
	if cf := pl.byBidx[name]; cf != nil {
		return cf
	}
	return pl.bidxFold[columnName(clause.Column{Name: name})]
}

func (cf *cfield) binding(ctx context.Context, row string) envelope.Binding {
	return envelope.Binding{Class: cf.Class, Tenant: tenantOf(ctx), Table: cf.Table, Column: cf.Column, Row: row}
}

func (cf *cfield) fail(op string, row string, sentinel, cause error) *Error {
	return &Error{Op: op, Model: cf.Model, Field: cf.Name, Table: cf.Table, Column: cf.Column, Row: row, Kind: sentinel, Err: cause}
}

// parseTag parses `fieldcrypt:"class[,option...]"`.
func parseTag(tag string) (Field, error) {
	var f Field
	parts := strings.Split(tag, ",")
	c, err := envelope.ParseClass(strings.TrimSpace(parts[0]))
	if err != nil {
		return f, fmt.Errorf("%w %q: %v", ErrTag, tag, strings.TrimPrefix(err.Error(), "fieldcrypt: "))
	}
	if !c.Encrypted() {
		return f, fmt.Errorf("%w %q: class public is stored in clear; remove the tag", ErrTag, tag)
	}
	f.Class, f.Mode = c, Randomized
	bidx := false
	for _, opt := range parts[1:] {
		opt = strings.TrimSpace(opt)
		name, arg, hasArg := strings.Cut(opt, "=")
		switch strings.ToLower(name) {
		case "deterministic":
			f.Mode = Deterministic
		case "blindindex":
			bidx = true
			f.BlindIndexSpec.Size = envelope.DefaultBlindIndexSize
			if !hasArg {
				continue
			}
			for _, p := range strings.FieldsFunc(arg, func(r rune) bool { return r == ';' || r == '+' }) {
				k, v, _ := strings.Cut(strings.TrimSpace(p), ":")
				switch strings.ToLower(k) {
				case "size":
					n, err := strconv.Atoi(v)
					if err != nil || n < 4 || n > 32 {
						return f, fmt.Errorf("%w %q: blindindex size must be 4 to 32 bytes", ErrTag, tag)
					}
					f.BlindIndexSpec.Size = n
				case "argon2":
					a := envelope.OWASPArgon2
					f.BlindIndexSpec.Argon2 = &a
				case "column":
					if v == "" {
						return f, fmt.Errorf("%w %q: blindindex column needs a name", ErrTag, tag)
					}
					f.BlindIndex = v
				default:
					return f, fmt.Errorf("%w %q: unknown blindindex parameter %q (want size:N, argon2, column:NAME)", ErrTag, tag, k)
				}
			}
		case "unique":
			f.Unique = true
		case "migrate":
			f.Migrate = true
		case "unbound":
			f.Unbound = true
		case "":
		default:
			return f, fmt.Errorf("%w %q: unknown option %q (want deterministic, blindindex[=size:N;argon2;column:NAME], unique, migrate, unbound)", ErrTag, tag, opt)
		}
	}
	switch {
	case bidx && f.Mode == Deterministic:
		return f, fmt.Errorf("%w %q: deterministic fields are searchable already; drop blindindex", ErrTag, tag)
	case f.Unique && !bidx:
		return f, fmt.Errorf("%w %q: unique needs a blindindex (the unique index is on the blind index column)", ErrTag, tag)
	}
	if bidx && f.BlindIndex == "" {
		f.BlindIndex = "-" // filled in with the column name by the caller
	}
	return f, nil
}

func kindOf(t reflect.Type) kind {
	switch {
	case t == timeType || t.ConvertibleTo(timeType) && t.Kind() == reflect.Struct:
		return kTime
	case t.Kind() == reflect.String:
		return kString
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return kBytes
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return kInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return kUint
	case reflect.Bool:
		return kBool
	case reflect.Float32, reflect.Float64:
		return kFloat
	}
	return kJSON
}

// planFor returns the plan of s, building it (and patching s) on first use.
func (p *Plugin) planFor(s *schema.Schema) (*plan, error) {
	if v, ok := p.plans.Load(s); ok {
		return v.(*plan), nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.plans.Load(s); ok {
		return v.(*plan), nil
	}
	pl, err := p.build(s)
	if err != nil {
		return nil, err
	}
	p.plans.Store(s, pl)
	p.reg.add(pl)
	return pl, nil
}

// prepareTree prepares s and every schema reachable through its
// relationships (for Joins and Preload).
func (p *Plugin) prepareTree(s *schema.Schema) (*plan, error) {
	root, err := p.planFor(s)
	if err != nil {
		return nil, err
	}
	if root.treeDone.Load() {
		return root, nil
	}
	enc := len(root.fields) > 0
	seen := map[*schema.Schema]bool{s: true}
	queue := []*schema.Schema{s}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, rel := range cur.Relationships.Relations {
			if fs := rel.FieldSchema; fs != nil && !seen[fs] {
				seen[fs] = true
				pl, err := p.planFor(fs)
				if err != nil {
					return nil, err
				}
				enc = enc || len(pl.fields) > 0
				queue = append(queue, fs)
			}
		}
	}
	root.treeEncrypted.Store(enc)
	root.treeDone.Store(true)
	return root, nil
}

// build computes the plan of s and patches its fields: encrypted columns
// become text, their scanner and setter decrypt, a hidden blind index field
// is added.
func (p *Plugin) build(s *schema.Schema) (*plan, error) {
	pl := &plan{s: s, byCol: map[string]*cfield{}, byBidx: map[string]*cfield{}, byFold: map[string]*cfield{}, bidxFold: map[string]*cfield{}, pks: s.PrimaryFields}
	for _, sf := range s.Fields {
		tag, ok := sf.Tag.Lookup("fieldcrypt")
		if !ok {
			continue
		}
		f, err := parseTag(tag)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", s.Name, sf.Name, err)
		}
		switch {
		case sf.DBName == "":
			return nil, fmt.Errorf("%w: %s.%s is not a column (for a struct, map or slice add `gorm:\"type:text\"`)", ErrTag, s.Name, sf.Name)
		case sf.PrimaryKey:
			return nil, fmt.Errorf("%w: %s.%s is a primary key and cannot be encrypted", ErrTag, s.Name, sf.Name)
		}
		f.Model, f.Name, f.Table, f.Column = s.Name, sf.Name, s.Table, sf.DBName
		if f.BlindIndex == "-" {
			f.BlindIndex = sf.DBName + "_bidx"
		}
		cf := &cfield{Field: f, p: p, pl: pl, sf: sf, base: sf.IndirectFieldType, ptr: sf.FieldType.Kind() == reflect.Ptr}
		cf.kind = kindOf(cf.base)
		pl.fields = append(pl.fields, cf)
		pl.byCol[f.Column] = cf
		pl.byFold[strings.ToLower(f.Column)] = cf
	}
	if len(pl.fields) == 0 {
		return pl, nil
	}
	for _, cf := range pl.fields {
		if _, taken := s.FieldsByDBName[cf.BlindIndex]; cf.BlindIndex != "" && taken {
			return nil, fmt.Errorf("%w: %s.%s: blind index column %q is already a field", ErrTag, s.Name, cf.Name, cf.BlindIndex)
		}
	}
	// Patch the schema. Maps are replaced, not mutated, so a goroutine
	// reading the schema concurrently never sees a map being written.
	byDB := make(map[string]*schema.Field, len(s.FieldsByDBName)+len(pl.fields))
	for k, v := range s.FieldsByDBName {
		byDB[k] = v
	}
	byName := make(map[string]*schema.Field, len(s.FieldsByName)+len(pl.fields))
	for k, v := range s.FieldsByName {
		byName[k] = v
	}
	byBind := make(map[string]*schema.Field, len(s.FieldsByBindName)+len(pl.fields))
	for k, v := range s.FieldsByBindName {
		byBind[k] = v
	}
	fields := append([]*schema.Field(nil), s.Fields...)
	dbNames := append([]string(nil), s.DBNames...)
	for _, cf := range pl.fields {
		sf := cf.sf
		if sf.TagSettings["TYPE"] == "" {
			sf.DataType, sf.GORMDataType, sf.Size = schema.String, schema.String, 0
		}
		cf.origSet = sf.Set
		sf.Set = cf.set
		sf.NewValuePool = rawPool
		if cf.BlindIndex == "" {
			continue
		}
		bf := newBidxField(s, cf)
		pl.byBidx[cf.BlindIndex] = cf
		pl.bidxFold[strings.ToLower(cf.BlindIndex)] = cf
		fields = append(fields, bf)
		dbNames = append(dbNames, bf.DBName)
		byDB[bf.DBName] = bf
		byName[bf.Name] = bf
		byBind[bf.Name] = bf
	}
	s.Fields, s.DBNames = fields, dbNames
	s.FieldsByDBName, s.FieldsByName, s.FieldsByBindName = byDB, byName, byBind
	for _, pk := range pl.pks {
		orig := pk.Set
		pk.Set = func(ctx context.Context, rv reflect.Value, v interface{}) error {
			if err := orig(ctx, rv, v); err != nil {
				return err
			}
			if st := stateOf(ctx); st != nil && len(st.pending) > 0 {
				return st.flush(ctx, rv)
			}
			return nil
		}
	}
	return pl, nil
}

// newBidxField builds the hidden schema field of a blind index column:
// AutoMigrate creates it (hex text, fixed size, indexed), INSERT and UPDATE
// carry it, SELECT * ignores it.
func newBidxField(s *schema.Schema, cf *cfield) *schema.Field {
	idx := "idx_" + s.Table + "_" + cf.BlindIndex
	kindTag := "index"
	if cf.Unique {
		kindTag = "uniqueIndex"
	}
	name := "gormcrypt:" + cf.Name + ":bidx"
	zero := func(context.Context, reflect.Value) reflect.Value { return reflect.New(stringType).Elem() }
	return &schema.Field{
		Name:              name,
		DBName:            cf.BlindIndex,
		BindNames:         []string{name},
		DataType:          schema.String,
		GORMDataType:      schema.String,
		Size:              2 * cf.BlindIndexSpec.Size,
		Creatable:         true,
		Updatable:         true,
		Readable:          false,
		FieldType:         stringType,
		IndirectFieldType: stringType,
		StructField:       reflect.StructField{Name: name, Type: stringType},
		Tag:               reflect.StructTag(`gorm:"` + kindTag + ":" + idx + `"`),
		TagSettings:       map[string]string{strings.ToUpper(kindTag): idx},
		Schema:            s,
		OwnerSchema:       s,
		ReflectValueOf:    zero,
		ValueOf:           func(context.Context, reflect.Value) (interface{}, bool) { return nil, true },
		Set:               func(context.Context, reflect.Value, interface{}) error { return nil },
		NewValuePool:      rawPool,
	}
}

// rowOf returns the row key of the struct rv: its primary key, or "" if the
// key is zero (not yet assigned).
func (pl *plan) rowOf(ctx context.Context, rv reflect.Value) string {
	switch len(pl.pks) {
	case 0:
		return ""
	case 1:
		v, zero := pl.pks[0].ValueOf(ctx, rv)
		if zero {
			return ""
		}
		return keyString(v)
	}
	parts := make([]any, len(pl.pks))
	for i, pk := range pl.pks {
		v, zero := pk.ValueOf(ctx, rv)
		if zero {
			return ""
		}
		parts[i] = v
	}
	return envelope.RowKeys(parts...)
}

// keyString is the canonical text of a primary key value: envelope.RowKey,
// shared with the reencrypt engine so both bind rows identically.
func keyString(v interface{}) string { return envelope.RowKey(v) }

func isZeroValue(v interface{}) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.IsZero() || rv.Kind() == reflect.Ptr && rv.Elem().IsZero()
}

// rowBound reports whether a ciphertext's header has the row-bound flag
// (false for a malformed one, which fails to open anyway).
func rowBound(ct []byte) bool {
	h, err := envelope.InspectHeader(ct)
	return err == nil && h.RowBound
}

// rawValue is what an encrypted column scans into.
type rawValue struct {
	b     []byte
	null  bool
	plain bool        // b is a plaintext the guard pool decrypted (rows.go)
	other interface{} // a non-text driver value (legacy plaintext)
}

func (r *rawValue) Scan(src interface{}) error {
	r.other, r.null, r.plain = nil, false, false
	r.b = r.b[:0]
	switch v := src.(type) {
	case nil:
		r.null = true
	case []byte:
		r.b = append(r.b, v...)
	case string:
		r.b = append(r.b, v...)
	default:
		if pt, ok := plaintextOf(v); ok {
			r.b = append(r.b, pt...)
			clear(pt)
			r.plain = true
			return nil
		}
		r.other = v
	}
	return nil
}

type valuePool struct{ p sync.Pool }

func (vp *valuePool) Get() interface{} { return vp.p.Get() }
func (vp *valuePool) Put(v interface{}) {
	if r, ok := v.(*rawValue); ok {
		clear(r.b)
		r.other, r.plain = nil, false
		vp.p.Put(r)
	}
}

var rawPool = &valuePool{p: sync.Pool{New: func() interface{} { return new(rawValue) }}}

// prepareModel parses model with db's schema cache and prepares it.
func (p *Plugin) prepareModel(db *gorm.DB, model interface{}) (*plan, error) {
	st := &gorm.Statement{DB: db}
	if err := st.Parse(model); err != nil {
		return nil, err
	}
	return p.prepareTree(st.Schema)
}
