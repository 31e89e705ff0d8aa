package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/console"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// quickstartReason is the reason quickstart's reveal states.
const quickstartReason = "quickstart: show a reveal"

// quickstartAccessResult is what quickstart's accountable-access steps did.
type quickstartAccessResult struct {
	Revealed   int     `json:"revealed"` // values revealed (never printed)
	Reason     string  `json:"reason"`
	Actor      string  `json:"actor"`
	ChainFiles int     `json:"chain_files"`
	Records    uint64  `json:"chain_records"`
	Checkpoint *uint64 `json:"checkpoint_seq,omitempty"`
	Intact     bool    `json:"chain_intact"`
}

// appendAuditChain adds an audit_chain section (its own local master key)
// and the SSN's blind index to a config quickstart wrote.
func appendAuditChain(dir, cfgPath string) error {
	keyPath := filepath.Join(dir, ".fieldcrypt", "master-audit.key")
	if _, err := (&config.Config{BaseDir: dir, AuditChain: &config.AuditChainConfig{MasterKey: "local://" + keyPath}}).CreateAuditKey(); err != nil {
		return err
	}
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "# The hash-chained audit log: every reveal and read is recorded, tampering shows.\n"+
		"audit_chain: {path: .fieldcrypt/audit-chain.jsonl, master_key: \"local://.fieldcrypt/master-audit.key\"}\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// quickstartAccess reveals one patient's SSN at the console with a reason
// (the value is not printed) and verifies the chained log that recorded
// it.
func (a *app) quickstartAccess(ctx context.Context, db *gorm.DB, keys envelope.KeySource, id string) (*quickstartAccessResult, error) {
	cfg := a.cfg
	sink, _ := a.auditSink().(*cliSink)
	if sink == nil || sink.chain == nil {
		return nil, fmt.Errorf("quickstart: the audit chain is not open")
	}
	c, err := console.NewGorm(db, console.Config{Keys: keys, Audit: sink, Columns: cfg.ConsoleColumns()})
	if err != nil {
		return nil, err
	}
	actor := cfg.ActorValue()
	res, err := c.Reveal(audit.WithActor(ctx, actor), console.Query{Table: "patients", Where: &console.Condition{Column: "id", Value: id}},
		[]string{"ssn"}, quickstartReason)
	if err != nil {
		return nil, err
	}
	out := &quickstartAccessResult{Revealed: res.Revealed, Reason: quickstartReason, Actor: actor.Name}
	if err := sink.chain.Checkpoint(); err != nil {
		return nil, err
	}
	files, err := cfg.AuditFiles(a.io.Dir, nil)
	if err != nil {
		return nil, err
	}
	vo, err := a.verifyOptions(ctx, cfg)
	if err != nil {
		return nil, err
	}
	v, err := audit.Verify(ctx, files, vo)
	if err != nil {
		return nil, err
	}
	out.ChainFiles, out.Records, out.Intact = len(files), v.Records, v.OK
	if len(v.Logs) == 1 && v.Logs[0].Checkpoint != nil {
		out.Checkpoint = &v.Logs[0].Checkpoint.Seq
	}
	return out, nil
}

// blindIndexYAML is a column's blind_index entry for a config line.
func blindIndexYAML(c config.Column) string {
	if c.BlindIndex == "" {
		return ""
	}
	return ", blind_index: " + c.BlindIndex
}
