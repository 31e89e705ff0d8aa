package keyring

import (
	"encoding/json"
	"time"
)

// kekJSON is the JSON shape of a KEKInfo: the reference flattened, times in
// UTC, InUseUntil included. It never holds key material.
type kekJSON struct {
	Class        string     `json:"class"`
	Tenant       string     `json:"tenant,omitempty"`
	Version      uint32     `json:"version"`
	State        string     `json:"state"`
	Primary      bool       `json:"primary"`
	SearchRank   int        `json:"search_rank,omitempty"`
	WrappedBy    string     `json:"wrapped_by"`     // master-key | class-key
	MasterKeyURI string     `json:"master_key_uri"` // "" when wrapped by the class key
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	DemotedAt    *time.Time `json:"demoted_at,omitempty"`   // when it stopped being the primary
	InUseUntil   *time.Time `json:"in_use_until,omitempty"` // until then Retire and Destroy refuse without Force
	DestroyedAt  *time.Time `json:"destroyed_at,omitempty"`
}

// MarshalJSON renders the version as {"class", "tenant", "version",
// "state", "primary", "search_rank", "wrapped_by", "master_key_uri", "created_at",
// "updated_at", "demoted_at", "in_use_until", "destroyed_at"}: the shape
// the fieldcrypt command prints with -o json.
func (i KEKInfo) MarshalJSON() ([]byte, error) {
	return json.Marshal(kekJSON{
		Class: i.Ref.Class.String(), Tenant: i.Ref.Tenant, Version: i.Ref.Version, State: string(i.State),
		Primary: i.Primary, SearchRank: i.SearchRank, WrappedBy: i.WrappedBy.String(), MasterKeyURI: i.MasterKeyURI,
		CreatedAt: i.CreatedAt.UTC(), UpdatedAt: i.UpdatedAt.UTC(),
		DemotedAt: utcOrNil(i.DemotedAt), InUseUntil: utcOrNil(i.InUseUntil()), DestroyedAt: utcOrNil(i.DestroyedAt),
	})
}

func utcOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
