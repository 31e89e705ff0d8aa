package config

import (
	"bytes"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// MasterKeyInFile returns the master key of class as the configuration
// file says (before the environment and flags), or "" when there is no
// file or it names none.
func (c *Config) MasterKeyInFile(class string) string {
	if c.Path == "" {
		return ""
	}
	data, err := os.ReadFile(c.Path)
	if err != nil {
		return ""
	}
	var fc Config
	if decodeConfig(data, &fc) != nil {
		return ""
	}
	return fc.Classes[class].MasterKey
}

// UpdateMasterKey sets classes.<class>.master_key in the YAML file
// at path to uri and moves the previous value to
// classes.<class>.previous_master_keys (KEKs stored under it stay
// readable), keeping the file's comments and layout, and replaces the
// file atomically.
func UpdateMasterKey(path, class, uri string) error {
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
