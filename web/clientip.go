package web

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientIP returns the address of the client that sent r. With hops == 0 it
// is the connection's peer. With hops == N, N proxies in front each append
// the address they saw to X-Forwarded-For, so the client is the Nth entry
// from the right; entries to its left are the client's own claims and are
// never used. When there are fewer entries than hops, the leftmost one (put
// there by a trusted proxy) is the client; with no header at all, the peer.
func clientIP(r *http.Request, hops int) (netip.Addr, error) {
	if hops > 0 {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			return forwardedClient(xff, hops)
		}
	}
	return peerAddr(r.RemoteAddr)
}

func peerAddr(remote string) (netip.Addr, error) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	return parseAddr(host)
}

// forwardedClient picks the client from X-Forwarded-For header lines.
func forwardedClient(lines []string, hops int) (netip.Addr, error) {
	// Walk from the right across all lines, which form one list.
	seen := 0
	var last string
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for line != "" {
			j := strings.LastIndexByte(line, ',')
			entry := strings.TrimSpace(line[j+1:])
			if j < 0 {
				line = ""
			} else {
				line = line[:j]
			}
			if entry == "" {
				continue
			}
			seen++
			last = entry
			if seen == hops {
				return parseAddr(entry)
			}
		}
	}
	if last == "" {
		return netip.Addr{}, errors.New("empty X-Forwarded-For")
	}
	return parseAddr(last)
}

// parseAddr parses an IP, with or without a port or brackets, dropping any
// IPv6 zone and unmapping IPv4-in-IPv6.
func parseAddr(s string) (netip.Addr, error) {
	if len(s) > 64 {
		return netip.Addr{}, errors.New("client address too long")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap(), nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.Addr{}, errors.New("client address is not an IP")
	}
	return a.WithZone("").Unmap(), nil
}

// ipKey is the limiter key of a client address: IPv4 per address, IPv6 per
// /64 (one subscriber's usual allocation), hashed to a fixed length.
func ipKey(a netip.Addr) string {
	var b []byte
	if a.Is4() {
		v := a.As4()
		b = v[:]
	} else {
		p, _ := a.Prefix(64)
		v := p.Addr().As16()
		b = v[:8]
	}
	sum := sha256.Sum256(b)
	return "ip." + hex.EncodeToString(sum[:16])
}
