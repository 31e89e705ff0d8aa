// Package cli implements the fieldcrypt command: key management, data
// re-encryption, encrypted backups, a quickstart and a benchmark, for
// operators working on a production database under live traffic.
//
// Each command is an adapter: it parses flags, calls the library (config
// for the configuration, ops for the workflows, backup, keyring) and
// prints what it returns, as text or with -o json as the library's own
// result types. Exit codes come from fielderr.KindOf.
//
// cmd/fieldcrypt/main.go only calls Main; everything else lives here so
// that tests run commands in-process (Run) and check their output and exit
// code.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
	"github.com/fieldcrypt/fieldcrypt/ops"
)

// IO is the environment a command runs in. Tests fill it with buffers.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Dir is the working directory relative paths resolve against; ""
	// means the process's.
	Dir string
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// StdinTerminal says a person can answer prompts on Stdin.
	StdinTerminal bool
	// StderrTerminal says progress bars may be drawn on Stderr.
	StderrTerminal bool
	// Now is the clock the keyring decides with (when a demoted key may be
	// destroyed); nil means time.Now. Tests move it forward.
	Now func() time.Time
}

// Main runs the command with the process's arguments and environment and
// returns the exit code. SIGINT and SIGTERM cancel the running operation,
// which stops cleanly and exits 130.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()
	dir, _ := os.Getwd()
	return Run(ctx, os.Args[1:], IO{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Dir: dir, Getenv: os.Getenv,
		StdinTerminal:  term.IsTerminal(int(os.Stdin.Fd())),
		StderrTerminal: term.IsTerminal(int(os.Stderr.Fd())),
	})
}

// Run runs the command line args and returns the exit code.
func Run(ctx context.Context, args []string, io IO) int {
	if io.Getenv == nil {
		io.Getenv = os.Getenv
	}
	if io.Dir == "" {
		io.Dir, _ = os.Getwd()
	}
	if io.Stdin == nil {
		io.Stdin = strings.NewReader("")
	}
	a := &app{io: io}
	defer a.close()
	root := a.rootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil && ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %w", context.Canceled, err)
	}
	if err != nil && !a.started && ExitCode(err) == ExitError {
		err = usageError(err)
	}
	code := ExitCode(err)
	if err != nil {
		a.printError(err, code)
	}
	return code
}

// app is one invocation: global flags, and what commands open lazily.
type app struct {
	io IO

	// global flags
	configPath string
	database   string
	keyringID  string
	tenant     string
	auditLog   string
	actor      string
	masterKeys []string
	output     string
	noProgress bool
	setFlags   map[string]bool
	started    bool // command line parsed; errors before this are usage errors
	emitted    bool // a JSON result was written to stdout

	cfg     *config.Config
	dsn     config.DSN
	op      *ops.Operator
	sink    audit.Sink
	metrics *ops.MetricsServer // --metrics-addr
	// tenantLabels is --metrics-tenant-labels: the tenant as a label of
	// the keyring's and the envelope's metrics.
	tenantLabels bool
	closers      []func()
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

func (a *app) jsonOut() bool { return a.output == "json" }

func (a *app) printError(err error, code int) {
	msg := a.dsn.Redact(err.Error())
	if code == ExitInterrupted {
		// The work done is kept (checkpoints, idempotent steps).
		msg = "interrupted; run the same command again to resume"
	}
	if a.jsonOut() && !a.emitted {
		// One JSON document on stdout: the result, or else the error.
		_ = json.NewEncoder(a.io.Stdout).Encode(map[string]any{"error": msg, "exit_code": code})
	}
	fmt.Fprintf(a.io.Stderr, "fieldcrypt: %s\n", msg)
	if code == ExitUsage && !strings.Contains(msg, "--help") {
		fmt.Fprintln(a.io.Stderr, "Run 'fieldcrypt --help' for usage.")
	}
}

// emit prints a result: v as JSON with --output json, else text(w).
func (a *app) emit(v any, text func(w io.Writer)) error {
	if a.jsonOut() {
		a.emitted = true
		enc := json.NewEncoder(a.io.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(a.io.Stdout)
	return nil
}

// note prints a human message on stderr (never in JSON mode's stdout).
func (a *app) note(format string, args ...any) {
	fmt.Fprintf(a.io.Stderr, format+"\n", args...)
}

func (a *app) overrides() config.Overrides {
	return config.Overrides{
		ConfigPath: a.configPath, Database: a.database, Keyring: a.keyringID, Tenant: a.tenant,
		AuditLog: a.auditLog, Actor: a.actor, MasterKeys: a.masterKeys, Set: a.setFlags,
	}
}

// config loads the configuration once and validates it.
func (a *app) config(needKeys bool) (*config.Config, error) {
	if a.cfg == nil {
		cfg, err := config.Load(a.io.Dir, a.io.Getenv, a.overrides())
		if err != nil {
			return nil, err
		}
		a.cfg = cfg
		a.dsn, _ = cfg.DSN()
	}
	return a.cfg, a.cfg.Validate(needKeys)
}

// operator opens the database and the keyring once. migrate creates or
// updates the tables (init and keys upgrade only: other commands never
// change the schema of a production database).
func (a *app) operator(ctx context.Context, migrate bool) (*ops.Operator, error) {
	if a.op != nil {
		return a.op, nil
	}
	cfg, err := a.config(true)
	if err != nil {
		return nil, err
	}
	op, err := ops.Open(ctx, cfg, ops.Options{Migrate: migrate, Audit: a.auditSink(), Now: a.io.Now, MeterProvider: a.meterProvider(), TenantLabels: a.tenantLabels})
	if err != nil {
		return nil, err
	}
	a.op = op
	a.closers = append(a.closers, func() { _ = op.Close() })
	return op, nil
}

// auditSink returns the configured audit sink (audit_log / --audit-log /
// FIELDCRYPT_AUDIT_LOG), events recorded whatever the context.
func (a *app) auditSink() audit.Sink {
	if a.sink != nil {
		return a.sink
	}
	a.sink = audit.Discard
	cfg := a.cfg
	if cfg == nil {
		var err error
		if cfg, err = config.Load(a.io.Dir, a.io.Getenv, a.overrides()); err != nil {
			return a.sink
		}
	}
	sink, closeFn, _ := cfg.AuditSink(a.io.Stderr, a.dsn.Redact)
	a.closers = append(a.closers, func() { _ = closeFn() })
	if cfg.AuditLog == "" && cfg.AuditChain == nil {
		return a.sink
	}
	var sinks []audit.Sink
	if cfg.AuditLog != "" {
		sinks = append(sinks, sink)
	}
	a.sink = a.withChain(cfg, sinks)
	return a.sink
}

// confirm returns the confirmation of a destructive operation: with yes,
// none; without a terminal, a refusal naming --yes; else the person at the
// terminal types the answer.
func (a *app) confirm(yes bool) ops.Confirm {
	return func(ctx context.Context, q ops.Question) error {
		if yes {
			return nil
		}
		if !a.io.StdinTerminal {
			return fielderr.Errorf(errRefused, "%s needs confirmation: pass --yes (no terminal to ask on)", q.Action)
		}
		fmt.Fprintf(a.io.Stderr, "%s\nType %q to confirm: ", q.Prompt, q.Answer)
		answer := make(chan string, 1)
		go func() {
			var line []byte
			buf := make([]byte, 1)
			for {
				n, err := a.io.Stdin.Read(buf)
				if n == 1 && buf[0] != '\n' {
					line = append(line, buf[0])
					continue
				}
				if n == 1 || err != nil {
					break
				}
			}
			answer <- string(line)
		}()
		select {
		case line := <-answer:
			if strings.TrimSpace(line) != q.Answer {
				return fielderr.Errorf(errRefused, "%s not confirmed (the answer was not %q)", q.Action, q.Answer)
			}
			return nil
		case <-ctx.Done():
			fmt.Fprintln(a.io.Stderr)
			return ctx.Err()
		}
	}
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "fieldcrypt",
		Short: "Application-level field encryption: keys, re-encryption, encrypted backups",
		Long: `fieldcrypt manages the keys of application-level field encryption and the
data they protect: a master key per classification in a KMS, versioned KEKs
per class (and optionally per tenant) stored wrapped in your database, and a
per-value data key inside each ciphertext.

Every command is safe on a production database under live traffic: reads are
batched, writes are per row and idempotent, destructive operations refuse
while data still depends on a key and ask for confirmation.

Configuration: flags > FIELDCRYPT_* environment > fieldcrypt.yaml (or
--config) > defaults. See docs/cli.md.

Exit codes:
` + exitCodeHelp(),
		Example: `  # Try it: a database, keys and sample data in a temp dir, in seconds
  fieldcrypt quickstart

  # Set up a project in the current directory (local key files, SQLite)
  fieldcrypt init

  # Rotate the critical KEK, re-encrypt (rewrap) the data, check nothing is left behind
  fieldcrypt keys rotate --class critical
  fieldcrypt reencrypt --column patients.ssn
  fieldcrypt keys census`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.started = true
			a.setFlags = map[string]bool{}
			cmd.Flags().Visit(func(f *pflag.Flag) { a.setFlags[f.Name] = true })
			if a.output == "" {
				a.output = a.io.Getenv(config.EnvOutput)
			}
			switch a.output {
			case "", "text":
				a.output = "text"
			case "json":
			case "csv":
				if cmd.Annotations["csv"] == "" {
					return usageErrorf("--output csv: %s writes text or json", cmd.CommandPath())
				}
			default:
				return usageErrorf("--output %q: want text or json", a.output)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "config file (default ./fieldcrypt.yaml; env FIELDCRYPT_CONFIG)")
	pf.StringVar(&a.database, "database", "", "database URL: sqlite://PATH, postgres://..., mysql://... (env FIELDCRYPT_DATABASE; default sqlite://fieldcrypt.db)")
	pf.StringVar(&a.keyringID, "keyring", "", "keyring id bound into every wrapped KEK (env FIELDCRYPT_KEYRING; default \"default\")")
	pf.StringVar(&a.tenant, "tenant", "", "tenant scope (env FIELDCRYPT_TENANT)")
	pf.StringVar(&a.auditLog, "audit-log", "", "append audit events as JSON lines to FILE, '-' for stderr (env FIELDCRYPT_AUDIT_LOG; default off)")
	pf.StringVar(&a.actor, "actor", "", "who is acting, recorded in audit events (env FIELDCRYPT_ACTOR; default user@host)")
	pf.StringArrayVar(&a.masterKeys, "master-key", nil, "CLASS=URI master key of a class, repeatable (env FIELDCRYPT_MASTER_KEY_<CLASS>)")
	pf.StringVarP(&a.output, "output", "o", "", "output format: text or json (env FIELDCRYPT_OUTPUT)")
	pf.BoolVar(&a.noProgress, "no-progress", false, "no progress bar or progress lines")

	root.AddCommand(
		a.initCmd(),
		a.keysCmd(),
		a.reencryptCmd(false),
		a.reencryptCmd(true),
		a.backupCmd(),
		a.quickstartCmd(),
		a.benchCmd(),
		a.configCmd(),
		a.exitCodesCmd(),
		a.auditCmd(),
		a.showCmd(),
	)
	a.registerCompletions(root)
	root.SetIn(a.io.Stdin)
	root.SetOut(a.io.Stdout)
	root.SetErr(a.io.Stderr)
	root.InitDefaultCompletionCmd() // after SetOut: it captures the writer
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Example = "  source <(fieldcrypt completion bash)\n  fieldcrypt completion zsh > \"${fpath[1]}/_fieldcrypt\"\n  fieldcrypt completion fish > ~/.config/fish/completions/fieldcrypt.fish"
			for _, sh := range c.Commands() {
				switch sh.Name() {
				case "bash":
					sh.Example = "  source <(fieldcrypt completion bash)\n  fieldcrypt completion bash > /etc/bash_completion.d/fieldcrypt"
				case "zsh":
					sh.Example = "  fieldcrypt completion zsh > \"${fpath[1]}/_fieldcrypt\""
				case "fish":
					sh.Example = "  fieldcrypt completion fish > ~/.config/fish/completions/fieldcrypt.fish"
				case "powershell":
					sh.Example = "  fieldcrypt completion powershell | Out-String | Invoke-Expression"
				}
			}
		}
	}
	return root
}

// registerCompletions completes flag values: classes, output formats and
// the configured columns.
func (a *app) registerCompletions(root *cobra.Command) {
	fixed := func(vals ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return vals, cobra.ShellCompDirectiveNoFileComp
		}
	}
	_ = root.RegisterFlagCompletionFunc("output", fixed("text", "json"))
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Flags().Lookup("class") != nil {
			_ = c.RegisterFlagCompletionFunc("class", fixed("critical", "high", "moderate", "low"))
		}
		if c.Flags().Lookup("column") != nil {
			_ = c.RegisterFlagCompletionFunc("column", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
				cfg, err := config.Load(a.io.Dir, a.io.Getenv, a.overrides())
				if err != nil {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				var names []string
				for _, col := range cfg.Columns {
					names = append(names, col.Name())
				}
				return names, cobra.ShellCompDirectiveNoFileComp
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func exitCodeHelp() string {
	var b strings.Builder
	for _, e := range ExitCodes {
		fmt.Fprintf(&b, "  %3d  %s\n", e.Code, e.Meaning)
	}
	return b.String()
}

func (a *app) exitCodesCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "exit-codes",
		Short:   "List the exit codes and what they mean",
		Example: "  fieldcrypt exit-codes\n  fieldcrypt exit-codes -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			type row struct {
				Code    int    `json:"code"`
				Meaning string `json:"meaning"`
			}
			var rows []row
			for _, e := range ExitCodes {
				rows = append(rows, row{e.Code, e.Meaning})
			}
			return a.emit(rows, func(w io.Writer) { fmt.Fprint(w, exitCodeHelp()) })
		},
	}
}

// noArgs is cobra.NoArgs as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments (got %q)", cmd.CommandPath(), args)
	}
	return nil
}
