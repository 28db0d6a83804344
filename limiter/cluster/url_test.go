package cluster_test

import (
	"strings"
	"testing"

	"github.com/go-floodgate/floodgate/limiter/cluster"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url  string
		addr string
		opts int    // how many dial options
		err  string // part of the error, "" for none
	}{
		{"redis://10.0.0.1:7000", "10.0.0.1:7000", 1, ""},
		{"redis://cache.example.com", "cache.example.com:6379", 1, ""},
		{"redis://", "localhost:6379", 1, ""},
		{"redis://:s3cret@h:6380", "h:6380", 2, ""},
		{"rediss://user:s3cret@h:6380/0", "h:6380", 3, ""},
		{"redis://s3cret@h:6380/", "h:6380", 2, ""}, // redis-cli's password-only form
		{"redis://[::1]", "[::1]:6379", 1, ""},
		{"redis://[::1]:7001", "[::1]:7001", 1, ""},
		{"redis://h:6380/2", "", 0, "only database 0"},
		{"redis://h:6380/x", "", 0, "not a database number"},
		{"http://h:6380", "", 0, "scheme"},
		{"redis:h", "", 0, "opaque"},
		{"redis://:s3cret@h:port:bad", "", 0, "cluster: URL"},
	}
	for _, tt := range tests {
		addr, opts, err := cluster.ParseURL(tt.url)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseURL(%q): %v; want an error with %q", tt.url, err, tt.err)
			} else if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("ParseURL(%q): the error %q shows the password", tt.url, err)
			}
			continue
		}
		if err != nil || addr != tt.addr || len(opts) != tt.opts {
			t.Errorf("ParseURL(%q) = %q, %d options, %v; want %q, %d options", tt.url, addr, len(opts), err, tt.addr, tt.opts)
		}
	}
}
