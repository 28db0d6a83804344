package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"net/http"
	"strings"
	"sync"
	"time"
)

// CookieName is the identity cookie's name, as in the tutorial.
const CookieName = "user-limiter"

const (
	idLen        = 16 // 128 random bits
	macLen       = sha256.Size
	cookieLen    = (idLen + macLen) * 4 / 3 // unpadded base64url of id||mac: 64
	cookieMaxAge = 30 * 24 * time.Hour
	// MinSecretLen is the least length of a signing key, in bytes.
	MinSecretLen = 32
)

var strict = base64.RawURLEncoding.Strict()

// macDomain separates these MACs from any other use of the same key.
var macDomain = []byte("floodgate identity v1\x00")

// identity is a verified browser identity: 128 random bits.
type identity [idLen]byte

// codec signs and verifies identity cookies. The value is the unpadded
// base64url encoding of id || HMAC-SHA256(key, domain || id). The first key
// signs; every key verifies, so a previous key keeps working while keys
// rotate. A codec is immutable and safe for concurrent use.
type codec struct {
	keys [][]byte
	macs []sync.Pool // per key: reusable HMAC states
}

func newCodec(keys [][]byte) (*codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("web: no signing key")
	}
	for _, k := range keys {
		if len(k) < MinSecretLen {
			return nil, errors.New("web: a signing key is shorter than 32 bytes")
		}
	}
	c := &codec{keys: keys, macs: make([]sync.Pool, len(keys))}
	for i, k := range keys {
		c.macs[i].New = func() any { return hmac.New(sha256.New, k) }
	}
	return c, nil
}

// mac computes the MAC of id under key i into out.
func (c *codec) mac(i int, id identity, out *[macLen]byte) {
	m := c.macs[i].Get().(hash.Hash)
	m.Reset()
	m.Write(macDomain)
	m.Write(id[:])
	m.Sum(out[:0])
	c.macs[i].Put(m)
}

// encode returns the cookie value for id, signed with the current key.
func (c *codec) encode(id identity) string {
	var raw [idLen + macLen]byte
	var mac [macLen]byte
	copy(raw[:], id[:])
	c.mac(0, id, &mac)
	copy(raw[idLen:], mac[:])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// decode verifies a cookie value. It reports the identity, whether the value
// was signed with the current key (false: it should be issued again), and
// whether it is valid at all. Anything malformed, oversized, tampered with or
// signed under an unknown key is invalid. The MAC comparison is constant-time.
func (c *codec) decode(value string) (id identity, current, ok bool) {
	if len(value) != cookieLen {
		return id, false, false
	}
	var raw [idLen + macLen]byte
	var in [cookieLen]byte
	copy(in[:], value)
	n, err := strict.Decode(raw[:], in[:])
	if err != nil || n != len(raw) {
		return id, false, false
	}
	copy(id[:], raw[:idLen])
	var mac [macLen]byte
	for i := range c.keys {
		c.mac(i, id, &mac)
		if hmac.Equal(raw[idLen:], mac[:]) {
			return id, i == 0, true
		}
	}
	return identity{}, false, false
}

// newIdentity returns 128 bits from crypto/rand.
func newIdentity() identity {
	var id identity
	if _, err := rand.Read(id[:]); err != nil {
		panic("web: crypto/rand failed: " + err.Error()) // never, per crypto/rand's docs
	}
	return id
}

// hash is the identity as Redis keys and logs see it: 32 hex characters of
// its SHA-256, so no client bytes reach either.
func (id identity) hash() string {
	sum := sha256.Sum256(id[:])
	return hex.EncodeToString(sum[:16])
}

// setCookie issues value as the identity cookie.
func setCookie(w http.ResponseWriter, value string, secure bool) {
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     "/",
		MaxAge:   int(cookieMaxAge / time.Second),
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	})
}

// cookieValue returns the value of the first identity cookie in r's Cookie
// headers, as r.Cookie would, without parsing (and allocating for) the
// others. Values are checked by codec.decode, which takes only exact-length
// base64url, so no unquoting is needed here.
func cookieValue(r *http.Request) (string, bool) {
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			name, val, ok := strings.Cut(part, "=")
			if ok && name == CookieName {
				return val, true
			}
		}
	}
	return "", false
}
