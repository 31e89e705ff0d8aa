package console

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Result is what Show and Reveal return: the rows as the database holds
// them, encrypted values as metadata, revealed values in clear.
type Result struct {
	Table    string   `json:"table"`
	Columns  []string `json:"columns"`
	Rows     []Row    `json:"rows"`
	Revealed int      `json:"revealed"`
	Failed   int      `json:"failed"`
}

func (r *Result) column(lower string) int {
	for i, c := range r.Columns {
		if strings.ToLower(c) == lower {
			return i
		}
	}
	return -1
}

// forget drops every revealed value.
func (r *Result) forget() {
	for _, row := range r.Rows {
		for i := range row.Cells {
			if row.Cells[i].Revealed {
				row.Cells[i].Value, row.Cells[i].Revealed = "", false
			}
		}
	}
}

// Row is one row.
type Row struct {
	Cells []Cell
	raw   map[string]any // stored values Reveal needs (ciphertexts, key, tenant)
}

// MarshalJSON writes a row as an object: column name to cell.
func (r Row) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, c := range r.Cells {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(c.Column)
		v, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// Cell is one value.
type Cell struct {
	Column   string
	Null     bool
	Value    string // a value in clear, or a revealed one
	Meta     *Meta  // set for encrypted values and blind indexes
	Revealed bool
	Error    string // why a reveal failed (never the value)
}

// MarshalJSON writes null, {"value": ...}, {"encrypted": {...}} or both
// with "revealed": true, and "error" for a failed reveal.
func (c Cell) MarshalJSON() ([]byte, error) {
	if c.Null {
		return []byte("null"), nil
	}
	type cell struct {
		Value     *string `json:"value,omitempty"`
		Encrypted *Meta   `json:"encrypted,omitempty"`
		Revealed  bool    `json:"revealed,omitempty"`
		Error     string  `json:"error,omitempty"`
	}
	out := cell{Encrypted: c.Meta, Revealed: c.Revealed, Error: c.Error}
	if c.Meta == nil || c.Revealed {
		v := c.Value
		out.Value = &v
	}
	return json.Marshal(out)
}

// String is the text form of a cell.
func (c Cell) String() string {
	switch {
	case c.Null:
		return "NULL"
	case c.Revealed:
		return c.Value
	case c.Error != "":
		return c.Meta.String() + " reveal failed: " + c.Error
	case c.Meta != nil:
		return c.Meta.String()
	}
	return c.Value
}

// Meta describes a stored value without its content: what its header
// says, and its size.
type Meta struct {
	Class         string `json:"class,omitempty"`
	KEKVersion    uint32 `json:"kek_version,omitempty"`
	Size          int    `json:"size"` // plaintext bytes (blind index: its stored size)
	RowBound      bool   `json:"row_bound,omitempty"`
	Deterministic bool   `json:"deterministic,omitempty"`
	BlindIndex    bool   `json:"blind_index,omitempty"`
	NotCiphertext bool   `json:"not_ciphertext,omitempty"` // an encrypted column holding something else
	Malformed     bool   `json:"malformed,omitempty"`
}

// String is the bracketed form: [critical v2, 41 B, row-bound].
func (m *Meta) String() string {
	switch {
	case m.BlindIndex:
		return fmt.Sprintf("[blind index of %s, %d B]", m.Class, m.Size)
	case m.NotCiphertext:
		return fmt.Sprintf("[not a ciphertext, %d B]", m.Size)
	case m.Malformed:
		return "[malformed ciphertext]"
	}
	s := fmt.Sprintf("[%s v%d, %d B", m.Class, m.KEKVersion, m.Size)
	if m.RowBound {
		s += ", row-bound"
	}
	if m.Deterministic {
		s += ", deterministic"
	}
	return s + "]"
}

// WriteText writes the rows as a table, one line per row.
func (r *Result) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(r.Columns, "\t")))
	for _, row := range r.Rows {
		cells := make([]string, len(row.Cells))
		for i, c := range row.Cells {
			cells[i] = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(c.String())
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "(%d rows", len(r.Rows))
	if r.Revealed > 0 || r.Failed > 0 {
		fmt.Fprintf(w, "; values revealed: %d, each recorded", r.Revealed)
		if r.Failed > 0 {
			fmt.Fprintf(w, "; %d failed to decrypt", r.Failed)
		}
	}
	fmt.Fprintln(w, ")")
	return nil
}
