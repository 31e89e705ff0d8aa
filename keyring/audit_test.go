package keyring

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

func TestAuditEvents(t *testing.T) {
	e := newEnv(t, nil)
	sink := &audit.Memory{}
	kr, _ := e.process(testConfig(), WithAudit(sink))
	s := envelope.Scope{Class: envelope.High, Tenant: "acme"}
	_, err := kr.EnsureScope(ctx, s)
	require.NoError(t, err)
	_, err = kr.Rotate(ctx, s)
	require.NoError(t, err)
	_, err = kr.Retire(ctx, ref(envelope.High, "acme", 1))
	require.Error(t, err, "v1 is still the search key")
	_, err = kr.ShredTenant(ctx, "acme")
	require.NoError(t, err)

	_, err = kr.EnsureScope(ctx, envelope.Scope{Class: envelope.Critical})
	require.NoError(t, err)
	// A second process unwraps through the KMS.
	other, _ := e.process(testConfig(), WithAudit(sink))
	_, err = other.KEK(ctx, ref(envelope.Critical, "", 1))
	require.NoError(t, err)

	var types []audit.Type
	for _, ev := range sink.Events() {
		types = append(types, ev.Type)
	}
	assert.Equal(t, []audit.Type{
		audit.KEKCreated, audit.KEKRotated, audit.KEKRetired,
		audit.KEKDestroyed, audit.KEKDestroyed, audit.TenantShredded,
		audit.KEKCreated, audit.MasterKeyUnwrap,
	}, types[:8])
	evs := sink.Events()
	assert.Equal(t, audit.Error, evs[2].Outcome, "the refused retire is recorded as an error")
	assert.Equal(t, "acme", evs[5].Tenant)
	assert.Equal(t, int64(2), evs[5].Counts["kek_versions_destroyed"])
	assert.Equal(t, "high", evs[1].Class)
	assert.Equal(t, uint32(2), evs[1].KEKVersion)

	// Events carry references, never key material or key objects.
	for _, ev := range evs {
		raw := fmt.Sprintf("%+v", ev)
		assert.NotContains(t, raw, "REDACTED")
		assert.NotContains(t, raw, "KEK(")
	}
}
