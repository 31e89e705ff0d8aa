package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/fieldcrypt/fieldcrypt/"

// layerRows reads the package map of docs/architecture.md: each of our
// packages (by import path below the module) and the row it is listed on,
// top row first. "`keyring/kms` + `awskms`" names keyring/kms/awskms too.
func layerRows(t *testing.T) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "architecture.md"))
	require.NoError(t, err)
	defer f.Close()
	tick := regexp.MustCompile("`([a-z0-9/]+)`")
	rows := map[string]int{}
	row, inTable := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "| layer |") {
			inTable = true
			continue
		}
		if !inTable {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(line, "|")
		if len(cells) < 4 || strings.HasPrefix(cells[1], "---") {
			continue
		}
		row++
		parent := ""
		for i, part := range strings.Split(cells[2], "+") {
			for _, m := range tick.FindAllStringSubmatch(part, -1) {
				name := m[1]
				switch {
				case i == 0 && parent == "":
					parent = name
				case i > 0 && !strings.Contains(name, "/"):
					name = parent + "/" + name // after "+": below the package before it
				}
				rows[name] = row
			}
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, rows, "no package map in docs/architecture.md")
	return rows
}

// rowOf finds the row of pkg, or of the nearest package above it in the
// tree that the map lists (envelope/internal/kwp is envelope's).
func rowOf(rows map[string]int, pkg string) (int, bool) {
	for p := pkg; p != "." && p != ""; p = filepath.Dir(p) {
		if r, ok := rows[p]; ok {
			return r, true
		}
	}
	return 0, false
}

// TestImportsPointDown checks docs/architecture.md against the code: no
// package imports one listed on a higher row of the package map ("Lower
// rows never import higher ones"), and every non-test package of the
// module that the map does not cover is named here on purpose.
func TestImportsPointDown(t *testing.T) {
	rows := layerRows(t)
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	require.NoError(t, err)
	unmapped := map[string]bool{ // helpers outside the map: tests, examples, test clocks
		"internal/e2e": true, "internal/testsvc": true, "internal/fakegcpkms": true,
		"internal/hooks": true, "examples/patients": true,
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		pkg := strings.TrimPrefix(p.ImportPath, module)
		from, ok := rowOf(rows, pkg)
		if !ok {
			require.True(t, unmapped[pkg], "package %s is not in docs/architecture.md's package map", pkg)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			to, ok := rowOf(rows, dep)
			if !ok {
				continue
			}
			require.LessOrEqual(t, from, to, "%s (row %d) imports %s (row %d), listed above it in docs/architecture.md", pkg, from, dep, to)
		}
	}
}
