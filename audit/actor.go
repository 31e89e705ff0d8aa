package audit

import (
	"context"
	"strings"
)

// ActorKind says whether an actor is a person or a service. It is stated
// by whoever sets the actor, never guessed from the name: policies treat
// the two differently (a person must say why they read critical data).
type ActorKind string

// Actor kinds. The values are part of the schema (field actor_kind).
const (
	KindPerson  ActorKind = "person"
	KindService ActorKind = "service"
)

// Actor is the person or service on whose behalf fieldcrypt acts: the
// support agent reading a ticket, the billing job, the operator at the
// console. It is not the OS user of the process.
type Actor struct {
	Kind ActorKind
	Name string
}

// Person returns the actor of a person, e.g. Person("support:jane").
func Person(name string) Actor { return Actor{Kind: KindPerson, Name: name} }

// Service returns the actor of a service, e.g. Service("billing").
func Service(name string) Actor { return Actor{Kind: KindService, Name: name} }

// IsPerson reports whether the actor is a person.
func (a Actor) IsPerson() bool { return a.Kind == KindPerson }

// String is "person:NAME" or "service:NAME", the form ParseActor reads.
func (a Actor) String() string {
	if a.Kind == "" {
		return a.Name
	}
	return string(a.Kind) + ":" + a.Name
}

// ParseActor reads the actor of a command line or a configuration file:
// "service:NAME" is a service, "person:NAME" and anything else a person
// (the name is then the whole string, so "support:jane" is the person
// "support:jane"). A command is run by someone; a service says so.
func ParseActor(s string) Actor {
	if name, ok := strings.CutPrefix(s, string(KindService)+":"); ok && name != "" {
		return Service(name)
	}
	if name, ok := strings.CutPrefix(s, string(KindPerson)+":"); ok && name != "" {
		return Person(name)
	}
	return Person(s)
}

type (
	actorKey   struct{}
	purposeKey struct{}
)

// WithActor returns a context whose audit events name a as their actor. A
// web handler sets it once per request, from the authenticated principal:
//
//	ctx = audit.WithActor(ctx, audit.Person("support:jane"))
//	ctx = audit.WithPurpose(ctx, "ticket 4711")
//	db.WithContext(ctx).First(&customer, id)
//
// An actor without a name is ignored.
func WithActor(ctx context.Context, a Actor) context.Context {
	if a.Name == "" {
		return ctx
	}
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor WithActor set, if any.
func ActorFrom(ctx context.Context) (Actor, bool) {
	if ctx == nil {
		return Actor{}, false
	}
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

// WithPurpose returns a context whose reads state why the data is needed
// ("ticket 4711"). The purpose is recorded in every audit event; policies
// may require one (see Policy). Write a reference, not data: the purpose
// is stored in the audit log as given. An empty purpose is ignored.
func WithPurpose(ctx context.Context, purpose string) context.Context {
	purpose = strings.TrimSpace(purpose)
	if purpose == "" {
		return ctx
	}
	return context.WithValue(ctx, purposeKey{}, purpose)
}

// PurposeFrom returns the purpose WithPurpose set, or "".
func PurposeFrom(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	p, _ := ctx.Value(purposeKey{}).(string)
	return p
}

// Attribute sets the event's actor and purpose from ctx where the event
// has none. Every sink of this package calls it; a custom sink should too.
func Attribute(ctx context.Context, e Event) Event {
	if e.Actor == "" {
		if a, ok := ActorFrom(ctx); ok {
			e.Actor, e.ActorKind = a.Name, a.Kind
		}
	}
	if e.Purpose == "" {
		e.Purpose = PurposeFrom(ctx)
	}
	return e
}
