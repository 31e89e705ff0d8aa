package envelope

// HKDF-SHA256 info labels. Each derivation's info is the label followed by
// the fields it binds, length-prefixed where their length varies (see
// docs/format.md, "Key derivations").
const (
	labelSIV        = "fieldcrypt/v1/deterministic-aes-siv"
	labelBlindIndex = "fieldcrypt/v1/blind-index-hmac-sha256"
	labelKEKWrap    = "fieldcrypt/v1/kek-wrap"
	labelKEKWrapSIV = "fieldcrypt/v1/kek-wrap-siv"
)
