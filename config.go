package main

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/httplimit"
	"github.com/go-floodgate/floodgate/web"
)

// config is the service's whole configuration, read once from the
// environment by loadConfig.
type config struct {
	Port string

	// RedisURL is a redis:// or rediss:// URL; empty with RedisAddr empty
	// means an embedded in-process Redis.
	RedisURL      string
	RedisAddr     string // host:port from REDIS_HOST and REDIS_PORT
	RedisPassword string
	RedisSource   string // which variable named the Redis
	TLSSkipVerify bool
	RedisTimeout  time.Duration
	RedisConns    int

	Limit      limiter.Limit
	IPLimit    limiter.Limit // zero: off
	FailMode   httplimit.FailMode
	DenyCache  int
	Keys       [][]byte
	RandomKey  bool // no SECRET_KEY: a random per-process key
	ProxyHops  int
	LogFormat  string
	LogLevel   slog.Level
	ShutdownIn time.Duration
}

// loadConfig reads the environment through getenv. A malformed value is an
// error naming its variable; nothing is guessed.
func loadConfig(getenv func(string) string) (config, error) {
	c := config{ShutdownIn: 25 * time.Second}
	var errs []string
	bad := func(name, format string, args ...any) {
		errs = append(errs, name+": "+fmt.Sprintf(format, args...))
	}
	str := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	integer := func(name string, def, min, max int) int {
		v := str(name, "")
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > max {
			bad(name, "%q is not a whole number from %d to %d", v, min, max)
			return def
		}
		return n
	}
	duration := func(name string, def, min, max time.Duration) time.Duration {
		v := str(name, "")
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < min || d > max {
			bad(name, "%q is not a Go duration from %v to %v (such as 10s or 250ms)", v, min, max)
			return def
		}
		return d
	}
	boolean := func(name string) bool {
		v := str(name, "false")
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(name, "%q is not true or false", v)
		}
		return b
	}

	c.Port = str("PORT", "5000")
	if n, err := strconv.Atoi(c.Port); err != nil || n < 0 || n > 65535 {
		bad("PORT", "%q is not a port number", c.Port)
	}

	for _, name := range []string{"REDIS_URL", "REDISCLOUD_URL"} {
		if v := str(name, ""); v != "" {
			u, err := url.Parse(v)
			switch {
			case err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Hostname() == "":
				bad(name, "want a redis:// or rediss:// URL with a host")
			case u.Port() != "" && !validPort(u.Port()):
				bad(name, "the port is not a number from 1 to 65535")
			case !dbPath.MatchString(u.EscapedPath()):
				bad(name, "the path must be empty or a database number, such as /0")
			}
			c.RedisURL, c.RedisSource = v, name
			break
		}
	}
	port := integer("REDIS_PORT", 6379, 1, 65535)
	if host := str("REDIS_HOST", ""); host != "" && c.RedisURL == "" {
		if !validHost(host) {
			bad("REDIS_HOST", "%q is not a host name or IP address (put the port in REDIS_PORT)", host)
		}
		c.RedisAddr = net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port))
		c.RedisPassword = getenv("REDIS_PASSWORD")
		c.RedisSource = "REDIS_HOST"
	}
	c.TLSSkipVerify = boolean("REDIS_TLS_SKIP_VERIFY")
	c.RedisTimeout = duration("REDIS_TIMEOUT", 100*time.Millisecond, time.Millisecond, time.Minute)
	c.RedisConns = integer("REDIS_CONNS", max(2, runtime.GOMAXPROCS(0)), 1, 1024)

	count := integer("RATE_LIMIT", 10, 1, 1<<30)
	window := duration("RATE_WINDOW", 10*time.Second, time.Millisecond, 366*24*time.Hour)
	if window%time.Millisecond != 0 {
		bad("RATE_WINDOW", "%v is not a whole number of milliseconds", window)
	}
	c.Limit = limiter.Per(count, window)
	if ip := integer("IP_RATE_LIMIT", 10*count, 0, 1<<30); ip > 0 {
		c.IPLimit = limiter.Per(ip, window)
	}
	var err error
	if c.FailMode, err = httplimit.ParseFailMode(str("FAIL_MODE", "open")); err != nil {
		bad("FAIL_MODE", "%q: want open or closed", getenv("FAIL_MODE"))
	}
	c.DenyCache = integer("DENY_CACHE_SIZE", 100000, 0, 1<<24)
	c.ProxyHops = integer("TRUSTED_PROXY_HOPS", 0, 0, 16)

	for _, name := range []string{"SECRET_KEY", "SECRET_KEY_PREVIOUS"} {
		v := getenv(name)
		switch {
		case v == "":
		case len(v) < web.MinSecretLen:
			bad(name, "is %d bytes; it must be at least %d (try: openssl rand -hex 32)", len(v), web.MinSecretLen)
		case name == "SECRET_KEY_PREVIOUS" && len(c.Keys) == 0:
			bad(name, "is set without SECRET_KEY")
		default:
			c.Keys = append(c.Keys, []byte(v))
		}
	}
	if len(c.Keys) == 0 {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return c, fmt.Errorf("SECRET_KEY: generating a random key: %w", err)
		}
		c.Keys, c.RandomKey = [][]byte{key}, true
	}

	switch c.LogFormat = strings.ToLower(str("LOG_FORMAT", "text")); c.LogFormat {
	case "text", "json":
	default:
		bad("LOG_FORMAT", "%q: want text or json", c.LogFormat)
	}
	if err := c.LogLevel.UnmarshalText([]byte(str("LOG_LEVEL", "info"))); err != nil {
		bad("LOG_LEVEL", "%q: want debug, info, warn or error", getenv("LOG_LEVEL"))
	}

	if len(errs) > 0 {
		return c, fmt.Errorf("configuration: %s", strings.Join(errs, "; "))
	}
	return c, nil
}

// dbPath is what redigo accepts as a Redis URL's path: nothing, or a
// database number.
var dbPath = regexp.MustCompile(`^(/\d*)?$`)

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// validHost accepts a DNS name or an IP address (IPv6 with or without
// brackets), and nothing with a port, a path or spaces.
func validHost(h string) bool {
	if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return a.Zone() == "" || !strings.ContainsAny(a.Zone(), "/ ")
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}
