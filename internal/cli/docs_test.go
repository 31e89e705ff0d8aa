package cli

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// docCommand is a fieldcrypt command line found in a Markdown file.
type docCommand struct {
	where string // file:line
	args  []string
}

var (
	inlineCode = regexp.MustCompile("`([^`]+)`")
	// where a command starts in a shell line: the line's start (after a
	// prompt or variable assignments), or after a pipe, &&, ; or $(.
	commandStart = regexp.MustCompile(`(?:^|\|\s*|&&\s*|;\s*|\$\(\s*)(?:\$\s+)?(?:[A-Z_]+=\S*\s+)*(?:go run \./cmd/fieldcrypt|fieldcrypt)(\s|$)`)
)

// docCommands extracts every fieldcrypt command line from a Markdown file:
// in code blocks (continuation lines joined) and in inline code.
func docCommands(t *testing.T, path string) []docCommand {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []docCommand
	add := func(line string, n int) {
		for _, loc := range commandStart.FindAllStringSubmatchIndex(line, -1) {
			rest := line[loc[1]:]
			out = append(out, docCommand{where: filepath.Base(path) + ":" + itoa(n), args: shellWords(rest)})
		}
	}
	sc := bufio.NewScanner(f)
	inBlock, n, pending, pendingAt := false, 0, "", 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock {
			if pending == "" {
				pendingAt = n
			}
			if s, ok := strings.CutSuffix(strings.TrimRight(line, " "), `\`); ok {
				pending += s + " "
				continue
			}
			add(strings.TrimSpace(pending+line), pendingAt)
			pending = ""
			continue
		}
		for _, m := range inlineCode.FindAllStringSubmatchIndex(line, -1) {
			if strings.HasSuffix(line[:m[0]], "SHA-256(") {
				continue // a string in a formula, not a command
			}
			add(line[m[2]:m[3]], n)
		}
	}
	require.NoError(t, sc.Err())
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

// shellWords splits the start of a shell command into words, up to the
// first operator or comment; quotes group, synopsis brackets and "..."
// are dropped.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord, quote := false, byte(0)
	flush := func() {
		if inWord {
			w := strings.Trim(cur.String(), "[]")
			w = strings.TrimSuffix(w, "...")
			w = strings.Trim(w, "[]")
			if w != "" {
				words = append(words, w)
			}
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			flush()
		case c == '|' || c == '>' || c == '<' || c == ';' || c == '#' || c == ')' || c == '&':
			flush()
			return words
		case c == '2' && i+1 < len(s) && s[i+1] == '>' && !inWord:
			return words
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words
}

// placeholder gives a typed flag a sample value when the docs show a
// placeholder (N, ID, DURATION).
func placeholder(f *pflag.Flag, v string) string {
	if !regexp.MustCompile(`^[A-Z_]+$`).MatchString(v) {
		return v
	}
	switch f.Value.Type() {
	case "int", "uint32", "float64", "int64":
		return "1"
	case "duration":
		return "1s"
	}
	return v
}

// TestDocumentedCommandsParse (issue 12 §3): every fieldcrypt command line
// in docs/ and README.md names a command that exists, with flags it
// accepts and arguments it takes.
func TestDocumentedCommandsParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	require.NoError(t, err)
	files = append(files, filepath.Join("..", "..", "README.md"))
	total := 0
	for _, path := range files {
		for _, dc := range docCommands(t, path) {
			total++
			a := &app{io: IO{Getenv: func(string) string { return "" }}}
			root := a.rootCmd()
			cmd, rest, err := root.Find(dc.args)
			if !assert.NoError(t, err, "%s: fieldcrypt %s", dc.where, strings.Join(dc.args, " ")) {
				continue
			}
			// typed flags shown with placeholders get sample values
			for i := 0; i+1 < len(rest); i++ {
				name := strings.TrimLeft(rest[i], "-")
				if strings.HasPrefix(rest[i], "-") && !strings.Contains(name, "=") {
					if f := cmd.Flags().Lookup(name); f != nil && f.Value.Type() != "bool" {
						rest[i+1] = placeholder(f, rest[i+1])
					} else if f := cmd.InheritedFlags().Lookup(name); f != nil && f.Value.Type() != "bool" {
						rest[i+1] = placeholder(f, rest[i+1])
					}
				}
			}
			if err := cmd.ParseFlags(rest); !assert.NoError(t, err, "%s: fieldcrypt %s", dc.where, strings.Join(dc.args, " ")) {
				continue
			}
			// flag values checked before any command runs (--output)
			if err := root.PersistentPreRunE(cmd, nil); !assert.NoError(t, err, "%s: fieldcrypt %s", dc.where, strings.Join(dc.args, " ")) {
				continue
			}
			if cmd.Args != nil {
				assert.NoError(t, cmd.Args(cmd, cmd.Flags().Args()), "%s: fieldcrypt %s", dc.where, strings.Join(dc.args, " "))
			}
		}
	}
	assert.Greater(t, total, 70, "the extraction finds the documented commands")
}
