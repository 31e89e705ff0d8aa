package kms

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestCheckWrapInput(t *testing.T) {
	cases := []struct {
		name string
		key  []byte
		ec   EncryptionContext
		ok   bool
	}{
		{"ok", make([]byte, 32), EncryptionContext{"a": "b"}, true},
		{"nil-context", make([]byte, 1), nil, true},
		{"max", make([]byte, MaxKeySize), nil, true},
		{"empty", nil, nil, false},
		{"oversize", make([]byte, MaxKeySize+1), nil, false},
		{"empty-ec-key", make([]byte, 32), EncryptionContext{"": "b"}, false},
		{"empty-ec-value", make([]byte, 32), EncryptionContext{"a": ""}, false},
		{"bad-utf8", make([]byte, 32), EncryptionContext{"a": "\xff"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckWrapInput(tc.key, tc.ec)
			if tc.ok != (err == nil) {
				t.Fatalf("CheckWrapInput = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("%v does not wrap ErrInvalidInput", err)
			}
		})
	}
	err := EncryptionContext{"tenant": "sécret-value\xff"}.Validate()
	if err == nil || strings.Contains(err.Error(), "sécret") {
		t.Fatalf("Validate must fail without echoing the value: %v", err)
	}
}

func TestContextError(t *testing.T) {
	if err := ContextError(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ContextError(ctx)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("ContextError = %v, want ErrUnavailable and context.Canceled", err)
	}
}
