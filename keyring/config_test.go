package keyring

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	with := func(f func(*Config)) Config {
		c := testConfig().clone()
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; nil: valid
	}{
		{"valid", testConfig(), nil},
		{"valid minimal local", Config{Name: "a", Classes: map[string]ClassConfig{"low": {MasterKey: "local://keys/low"}}}, nil},
		{"valid aws alias", with(func(c *Config) {
			c.Classes["critical"] = ClassConfig{MasterKey: "aws-kms://arn:aws:kms:us-east-1:111122223333:alias/fieldcrypt-critical"}
		}), nil},
		{"no name", with(func(c *Config) { c.Name = "" }), []string{"name"}},
		{"bad name", with(func(c *Config) { c.Name = "a b" }), []string{`name "a b"`}},
		{"unknown class", with(func(c *Config) { c.Classes["secret"] = ClassConfig{MasterKey: "local:///k"} }), []string{`class "secret"`, "unknown class"}},
		{"upper-case class", with(func(c *Config) { c.Classes["Low"] = ClassConfig{MasterKey: "local:///k2"} }), []string{`class "Low"`}},
		{"shared master key", with(func(c *Config) { c.Classes["low"] = ClassConfig{MasterKey: uriCritical} }), []string{`class "low"`, uriCritical, `class "critical"`, "never cross classification levels"}},
		{"no scheme", with(func(c *Config) { c.Classes["low"] = ClassConfig{MasterKey: "/etc/key"} }), []string{`class "low"`, "no scheme"}},
		{"unknown scheme", with(func(c *Config) { c.Classes["low"] = ClassConfig{MasterKey: "vault://x/y"} }), []string{`class "low"`, `unknown scheme "vault"`}},
		{"aws not an arn", with(func(c *Config) { c.Classes["critical"] = ClassConfig{MasterKey: "aws-kms://1234abcd"} }), []string{`class "critical"`, "arn:aws:kms"}},
		{"aws bad account", with(func(c *Config) {
			c.Classes["critical"] = ClassConfig{MasterKey: "aws-kms://arn:aws:kms:us-east-1:1234:key/abc"}
		}), []string{`class "critical"`}},
		{"gcp missing cryptoKeys", with(func(c *Config) {
			c.Classes["high"] = ClassConfig{MasterKey: "gcp-kms://projects/p/locations/l/keyRings/r"}
		}), []string{`class "high"`, "cryptoKeys"}},
		{"local empty path", with(func(c *Config) { c.Classes["moderate"] = ClassConfig{MasterKey: "local://"} }), []string{`class "moderate"`, "non-empty path"}},
		{"missing master key", with(func(c *Config) { c.Classes["low"] = ClassConfig{} }), []string{`class "low"`, "master_key is required"}},
		{"public with key", with(func(c *Config) { c.Classes["public"] = ClassConfig{MasterKey: "local:///pub"} }), []string{`class "public"`, "stored in clear"}},
		{"ttl above max age", with(func(c *Config) { c.CacheTTL = 2 * time.Hour; c.MaxAge = time.Hour }), []string{"cache_ttl 2h0m0s exceeds max_age 1h0m0s"}},
		{"negative ttl", with(func(c *Config) { c.CacheTTL = -1 }), []string{"negative"}},
		{"valid previous master keys", with(func(c *Config) {
			c.Classes["critical"] = ClassConfig{MasterKey: uriNewCritical, PreviousMasterKeys: []string{uriCritical, "local:///old/critical.key"}}
		}), nil},
		{"previous master key malformed", with(func(c *Config) {
			c.Classes["critical"] = ClassConfig{MasterKey: uriNewCritical, PreviousMasterKeys: []string{"aws-kms://nope"}}
		}), []string{`class "critical": previous master key URI "aws-kms://nope"`}},
		{"previous master key of another class", with(func(c *Config) {
			c.Classes["critical"] = ClassConfig{MasterKey: uriNewCritical, PreviousMasterKeys: []string{uriLow}}
		}), []string{`class "critical": previous master key`, uriLow, `class "low"`, "never cross classification levels"}},
		{"previous master key shared by two classes", with(func(c *Config) {
			c.Classes["critical"] = ClassConfig{MasterKey: uriCritical, PreviousMasterKeys: []string{"local:///old.key"}}
			c.Classes["low"] = ClassConfig{MasterKey: uriLow, PreviousMasterKeys: []string{"local:///old.key"}}
		}), []string{`class "low": previous master key "local:///old.key" is also a master key of class "critical"`}},
		{"previous master key is the current one", with(func(c *Config) {
			c.Classes["low"] = ClassConfig{MasterKey: uriLow, PreviousMasterKeys: []string{uriLow}}
		}), []string{`class "low"`, "listed twice (or is the current master key)"}},
		{"public with previous keys", with(func(c *Config) { c.Classes["public"] = ClassConfig{PreviousMasterKeys: []string{"local:///p"}} }),
			[]string{`class "public": public data takes no previous_master_keys`}},
		{"state refresh at the bound", with(func(c *Config) { c.StateRefresh = MaxStateAge / 2 }), nil},
		{"state refresh above the bound", with(func(c *Config) { c.StateRefresh = MaxStateAge/2 + time.Second }), []string{"state_refresh 1m1s exceeds 1m0s (half of keyring.MaxStateAge 2m0s)"}},
		{"negative state refresh", with(func(c *Config) { c.StateRefresh = -time.Second }), []string{"state_refresh -1s is negative"}},
		{"nothing encrypted", Config{Name: "a", Classes: map[string]ClassConfig{"public": {}}}, []string{"no encrypted class"}},
		{"several problems reported together", with(func(c *Config) {
			c.Classes["low"] = ClassConfig{MasterKey: "nope"}
			c.Classes["public"] = ClassConfig{MasterKey: "local:///p"}
		}), []string{`class "low"`, `class "public"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidConfig)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			_, nerr := New(tt.cfg, NewFileStore(t.TempDir()+"/k.json"))
			assert.True(t, errors.Is(nerr, ErrInvalidConfig), "New validates too")
		})
	}
}

func TestCheckMasterKeyURI(t *testing.T) {
	tests := []struct {
		uri string
		ok  bool
	}{
		{"aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", true},
		{"aws-kms://arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd", true},
		{"aws-kms://arn:aws:kms:eu-west-1:111122223333:alias/app/critical", true},
		{"aws-kms://arn:aws:s3:::bucket", false},
		{"aws-kms://", false},
		{"gcp-kms://projects/p/locations/global/keyRings/r/cryptoKeys/k", true},
		{"gcp-kms://projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1", false},
		{"gcp-kms://projects//locations/global/keyRings/r/cryptoKeys/k", false},
		{"local:///var/lib/k", true},
		{"local://relative/k", true},
		{"local://", false},
		{"local://   ", false},
		{"file:///k", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			err := CheckMasterKeyURI(tt.uri)
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, ErrInvalidConfig)
				assert.Contains(t, err.Error(), tt.uri)
			}
		})
	}
}
