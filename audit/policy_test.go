package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/audit"
)

func TestPolicyPermit(t *testing.T) {
	bg := context.Background()
	person := audit.WithActor(bg, audit.Person("support:jane"))
	service := audit.WithActor(bg, audit.Service("billing"))
	tests := []struct {
		name    string
		policy  audit.Policy
		ctx     context.Context
		refused bool
	}{
		{"critical default, person without purpose", audit.DefaultPolicy("critical"), person, true},
		{"critical default, person with purpose", audit.DefaultPolicy("critical"), audit.WithPurpose(person, "ticket 4711"), false},
		{"critical default, blank purpose", audit.DefaultPolicy("critical"), audit.WithPurpose(person, "  "), true},
		{"critical default, service", audit.DefaultPolicy("critical"), service, false},
		{"critical default, no actor", audit.DefaultPolicy("critical"), bg, false},
		{"high default, person", audit.DefaultPolicy("high"), person, false},
		{"always, service", audit.Policy{Purpose: audit.PurposeAlways}, service, true},
		{"always, no actor", audit.Policy{Purpose: audit.PurposeAlways}, bg, true},
		{"never, person", audit.Policy{Purpose: audit.PurposeNever}, person, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy.Permit(tc.ctx, "critical")
			if !tc.refused {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, audit.ErrPurposeRequired)
		})
	}
}

func TestPolicies(t *testing.T) {
	ps := audit.Policies{"low": {Record: audit.RecordNone}}
	assert.Equal(t, audit.RecordNone, ps.For("low").Record)
	assert.Equal(t, audit.PurposeNever, ps.For("low").Purpose, "zero fields get defaults")
	assert.Equal(t, audit.DefaultPolicy("critical"), ps.For("critical"))
	assert.False(t, ps.For("low").Records())
	assert.True(t, ps.For("critical").Records())

	p, err := audit.ParsePolicy("high", "sampled:0.25", "persons")
	require.NoError(t, err)
	assert.Equal(t, audit.Policy{Record: audit.RecordSampled, SampleRate: 0.25, Purpose: audit.PurposePersons}, p)
	for _, bad := range [][2]string{{"sampled", ""}, {"sampled:2", ""}, {"sometimes", ""}, {"all", "maybe"}, {"sampled:x", ""}} {
		_, err := audit.ParsePolicy("high", bad[0], bad[1])
		assert.Error(t, err, "%v", bad)
	}
	require.Error(t, audit.Policies{"high": {Record: "sometimes"}}.Validate())
	n := 0
	sampled := audit.Policy{Record: audit.RecordSampled, SampleRate: 0.5}
	for range 1000 {
		if sampled.Records() {
			n++
		}
	}
	assert.InDelta(t, 500, n, 120)
}

func TestActorTravelsWithTheContext(t *testing.T) {
	ctx := audit.WithPurpose(audit.WithActor(context.Background(), audit.Person("support:jane")), "ticket 4711")
	var buf bytes.Buffer
	audit.NewSlogSink(slog.New(slog.NewJSONHandler(&buf, nil))).Record(ctx, audit.Event{Type: audit.DecryptAccess, Table: "t", Column: "c"})
	var got map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	assert.Equal(t, "support:jane", got["actor"])
	assert.Equal(t, "person", got["actor_kind"])
	assert.Equal(t, "ticket 4711", got["purpose"])

	m := &audit.Memory{}
	m.Record(ctx, audit.Event{Type: audit.KEKRotated, Actor: "explicit"})
	assert.Equal(t, "explicit", m.Events()[0].Actor, "an event's own actor wins")
	assert.Equal(t, "ticket 4711", m.Events()[0].Purpose)

	assert.Equal(t, audit.Service("billing"), audit.ParseActor("service:billing"))
	assert.Equal(t, audit.Person("support:jane"), audit.ParseActor("support:jane"))
	assert.Equal(t, audit.Person("jane"), audit.ParseActor("person:jane"))
	assert.Equal(t, "service:billing", audit.Service("billing").String())
	_, ok := audit.ActorFrom(audit.WithActor(context.Background(), audit.Person("")))
	assert.False(t, ok, "an unnamed actor is ignored")
}
