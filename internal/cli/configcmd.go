package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show or validate the effective configuration",
		Example: `  fieldcrypt config show
  fieldcrypt config validate --config /etc/fieldcrypt.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (flags > env > file > defaults), password redacted",
		Example: `  fieldcrypt config show
  FIELDCRYPT_DATABASE=postgres://app:secret@db/app fieldcrypt config show -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config(false)
			if err != nil {
				return err
			}
			r := cfg.Redacted()
			return a.emit(r, func(w io.Writer) {
				if r.Path != "" {
					fmt.Fprintf(w, "# from %s, environment and flags\n", r.Path)
				} else {
					fmt.Fprintln(w, "# no config file; defaults, environment and flags")
				}
				enc := yaml.NewEncoder(w)
				enc.SetIndent(2)
				_ = enc.Encode(r)
			})
		},
	}
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Check the configuration without touching the database or the KMS",
		Example: `  fieldcrypt config validate
  fieldcrypt config validate --config staging.yaml -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config(true)
			if err != nil {
				return err
			}
			res := map[string]any{"valid": true, "config_file": cfg.Path, "classes": len(cfg.EncryptedClasses()), "columns": len(cfg.Columns)}
			return a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "configuration OK: %d classes, %d columns (%s)\n", len(cfg.EncryptedClasses()), len(cfg.Columns), orDefault(cfg.Path, "no config file"))
			})
		},
	}
	cmd.AddCommand(show, validate)
	return cmd
}

// writeJSONFile writes v to a new file (mode 0600), replacing none.
func writeJSONFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// updateConfigMasterKey sets classes.<class>.master_key in the YAML file
// at path to uri and moves the previous value to
// classes.<class>.previous_master_keys (KEKs stored under it stay
// readable), keeping the file's comments and layout, and replaces the
// file atomically.
func updateConfigMasterKey(path, class, uri string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("not a YAML mapping")
	}
	classes := mapGet(doc.Content[0], "classes")
	if classes == nil || classes.Kind != yaml.MappingNode {
		return fmt.Errorf("no classes: mapping")
	}
	cl := mapGet(classes, class)
	if cl == nil || cl.Kind != yaml.MappingNode {
		return fmt.Errorf("no classes.%s mapping", class)
	}
	mk := mapGet(cl, "master_key")
	if mk == nil {
		return fmt.Errorf("no classes.%s.master_key", class)
	}
	old := mk.Value
	mk.Value, mk.Tag, mk.Style = uri, "!!str", 0
	prev := mapGet(cl, "previous_master_keys")
	if prev == nil {
		prev = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		cl.Content = append(cl.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "previous_master_keys"}, prev)
	}
	if prev.Kind != yaml.SequenceNode {
		return fmt.Errorf("classes.%s.previous_master_keys is not a list", class)
	}
	kept := prev.Content[:0]
	for _, n := range prev.Content {
		if n.Value != uri && n.Value != old {
			kept = append(kept, n)
		}
	}
	prev.Content = kept
	if old != uri {
		prev.Content = append(prev.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: old})
	}
	if len(prev.Content) > 0 {
		prev.Style = 0
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func mapGet(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
