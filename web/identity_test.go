package web

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

var (
	keyA = bytes.Repeat([]byte("a"), 32)
	keyB = bytes.Repeat([]byte("b"), 32)
)

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	c, err := newCodec([][]byte{keyA})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id := newIdentity()
		v := c.encode(id)
		if len(v) != cookieLen || seen[v] {
			t.Fatalf("value %q: len %d (want %d) or repeated", v, len(v), cookieLen)
		}
		seen[v] = true
		got, current, ok := c.decode(v)
		if !ok || !current || got != id {
			t.Fatalf("decode(encode(id)) = %x, %v, %v; want %x, true, true", got, current, ok, id)
		}
	}
}

func TestCodecRotation(t *testing.T) {
	t.Parallel()
	old, _ := newCodec([][]byte{keyA})
	rotated, _ := newCodec([][]byte{keyB, keyA})
	unrelated, _ := newCodec([][]byte{keyB})
	id := newIdentity()
	v := old.encode(id)
	if got, current, ok := rotated.decode(v); !ok || current || got != id {
		t.Errorf("a cookie under the previous key: got %v current=%v ok=%v; want accepted, not current", got, current, ok)
	}
	if _, _, ok := unrelated.decode(v); ok {
		t.Error("a cookie under an unknown key was accepted")
	}
	if _, current, ok := rotated.decode(rotated.encode(id)); !ok || !current {
		t.Error("a cookie under the current key is not current")
	}
}

func TestCodecRejects(t *testing.T) {
	t.Parallel()
	c, _ := newCodec([][]byte{keyA})
	other, _ := newCodec([][]byte{keyB})
	id := newIdentity()
	good := c.encode(id)
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	for _, tt := range badCookies(good, other.encode(id), flip) {
		if _, _, ok := c.decode(tt.value); ok {
			t.Errorf("%s: %q accepted", tt.name, tt.value)
		}
	}
}

type badCookie struct{ name, value string }

// badCookies lists every kind of bad identity cookie.
func badCookies(good, otherKey string, flip func(int) string) []badCookie {
	return []badCookie{
		{"empty", ""},
		{"garbage", "hello"},
		{"wrong length, one short", good[:len(good)-1]},
		{"wrong length, one more", good + "A"},
		{"bad base64", strings.Repeat("*", cookieLen)},
		{"standard base64 alphabet", strings.ReplaceAll(strings.ReplaceAll(good, "-", "+"), "_", "/") + strings.Repeat("+", boolInt(!strings.ContainsAny(good, "-_")))},
		{"hex", strings.Repeat("ab", 32)},
		{"padded", good[:len(good)-2] + "=="},
		{"truncated signature", base64.RawURLEncoding.EncodeToString(mustDecode(good)[:idLen+macLen-4])},
		{"tampered id", flip(0)},
		{"tampered signature", flip(idLen + 3)},
		{"another key's signature", otherKey},
		{"control bytes", "\x00\x01" + good[2:]},
		{"8 KB", strings.Repeat("A", 8<<10)},
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func mustDecode(s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestNewCodecErrors(t *testing.T) {
	t.Parallel()
	for _, keys := range [][][]byte{nil, {[]byte("short")}, {keyA, []byte("short")}} {
		if _, err := newCodec(keys); err == nil {
			t.Errorf("newCodec(%d keys) accepted a missing or short key", len(keys))
		}
	}
}

func FuzzCodecDecode(f *testing.F) {
	c, _ := newCodec([][]byte{keyA, keyB})
	good := c.encode(identity{1, 2, 3})
	f.Add(good)
	f.Add("")
	f.Add(strings.Repeat("A", cookieLen))
	f.Add(good[:10])
	f.Fuzz(func(t *testing.T, v string) {
		id, _, ok := c.decode(v)
		if !ok {
			return
		}
		// Whatever decodes must be exactly what the codec would issue.
		if c.encode(id) != v {
			if other, _ := newCodec([][]byte{keyB}); other.encode(id) != v {
				t.Fatalf("%q decoded to %x but is not its encoding", v, id)
			}
		}
	})
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		remote string
		xff    []string
		hops   int
		want   string
		err    bool
	}{
		{"peer v4", "192.0.2.1:1234", nil, 0, "192.0.2.1", false},
		{"peer v6", "[2001:db8::1]:1234", nil, 0, "2001:db8::1", false},
		{"peer v6 zone", "[fe80::1%eth0]:1234", nil, 0, "fe80::1", false},
		{"peer mapped v4", "[::ffff:192.0.2.1]:1234", nil, 0, "192.0.2.1", false},
		{"xff ignored without hops", "192.0.2.1:1", []string{"203.0.113.9"}, 0, "192.0.2.1", false},
		{"one hop", "10.0.0.1:1", []string{"203.0.113.9"}, 1, "203.0.113.9", false},
		{"spoofed left entries ignored", "10.0.0.1:1", []string{"6.6.6.6, 7.7.7.7, 203.0.113.9"}, 1, "203.0.113.9", false},
		{"spoof across header lines", "10.0.0.1:1", []string{"6.6.6.6", "203.0.113.9"}, 1, "203.0.113.9", false},
		{"two hops", "10.0.0.1:1", []string{"6.6.6.6, 203.0.113.9, 10.1.1.1"}, 2, "203.0.113.9", false},
		{"fewer entries than hops", "10.0.0.1:1", []string{"203.0.113.9"}, 2, "203.0.113.9", false},
		{"no xff with hops: the peer", "192.0.2.1:1", nil, 1, "192.0.2.1", false},
		{"entry with port", "10.0.0.1:1", []string{"203.0.113.9:5555"}, 1, "203.0.113.9", false},
		{"bracketed v6 entry", "10.0.0.1:1", []string{"[2001:db8::5]"}, 1, "2001:db8::5", false},
		{"empty entries skipped", "10.0.0.1:1", []string{"203.0.113.9, ,"}, 1, "203.0.113.9", false},
		{"garbage at the trusted position", "10.0.0.1:1", []string{"1.2.3.4, nonsense"}, 1, "", true},
		{"only commas", "10.0.0.1:1", []string{" , ,"}, 1, "", true},
		{"unparseable peer", "nonsense", nil, 0, "", true},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tt.remote
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		got, err := clientIP(r, tt.hops)
		if (err != nil) != tt.err {
			t.Errorf("%s: err = %v, want error %v", tt.name, err, tt.err)
			continue
		}
		if !tt.err && got.String() != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestIPKey(t *testing.T) {
	t.Parallel()
	k := func(s string) string { return ipKey(netip.MustParseAddr(s)) }
	if k("2001:db8:1:2::1") != k("2001:db8:1:2:ffff::9") {
		t.Error("two addresses in one IPv6 /64 have different keys")
	}
	if k("2001:db8:1:2::1") == k("2001:db8:1:3::1") {
		t.Error("two IPv6 /64s share a key")
	}
	if k("192.0.2.1") == k("192.0.2.2") {
		t.Error("two IPv4 addresses share a key")
	}
	if got := k("192.0.2.1"); len(got) != len("ip.")+32 || !strings.HasPrefix(got, "ip.") {
		t.Errorf("ipKey = %q: want ip. and 32 hex characters", got)
	}
}

func FuzzClientIP(f *testing.F) {
	f.Add("192.0.2.1:1234", "203.0.113.9", 1)
	f.Add("[::1]:1", "6.6.6.6, [2001:db8::1]:80", 2)
	f.Add("x", ",,,", 3)
	f.Fuzz(func(t *testing.T, remote, xff string, hops int) {
		if hops < 0 || hops > 16 {
			return
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		a, err := clientIP(r, hops)
		if err != nil {
			return
		}
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("clientIP(%q, %q, %d) = %v: not a plain valid address", remote, xff, hops, a)
		}
		if k := ipKey(a); len(k) != 35 {
			t.Fatalf("ipKey length %d", len(k))
		}
	})
}
