package cluster

import (
	"strings"
	"testing"

	"github.com/mna/redisc"
)

func TestRouteOf(t *testing.T) {
	t.Parallel()
	sha := "e0e1f9fabfc9d4800c877a703b823ac0578ff8db" // a SHA1 is never taken for a key
	tests := []struct {
		cmd  string
		args []interface{}
		kind routeKind
		keys []string
		why  string // part of the refusal
	}{
		{"EVALSHA", []interface{}{sha, 1, "requests.a", 10, 1000, 1}, toSlot, []string{"requests.a"}, ""},
		{"evalsha", []interface{}{sha, "1", []byte("requests.b"), 10}, toSlot, []string{"requests.b"}, ""},
		{"EVAL", []interface{}{"return 1", int64(2), "{u}.a", "{u}.b"}, toSlot, []string{"{u}.a", "{u}.b"}, ""},
		{"EVAL", []interface{}{"return 1", 0}, toSlot, nil, ""},
		{"EVAL", []interface{}{"return 1", 2, "a", "b"}, refused, nil, "different slots"},
		{"EVALSHA", []interface{}{sha, 2, "a"}, refused, nil, "number of keys"},
		{"EVALSHA", []interface{}{sha}, refused, nil, "number of keys"},
		{"FCALL", []interface{}{"f", 1, "k"}, toSlot, []string{"k"}, ""},
		{"SCRIPT", []interface{}{"LOAD", "return 1"}, toMasters, nil, ""},
		{"SCRIPT", []interface{}{"flush"}, toMasters, nil, ""},
		{"SCRIPT", []interface{}{"EXISTS", sha}, toMasters, nil, ""},
		{"SCRIPT", []interface{}{"KILL"}, refused, nil, "only LOAD"},
		{"SCRIPT", nil, refused, nil, "no subcommand"},
		{"PING", nil, toSlot, nil, ""},
		{"ECHO", []interface{}{"hello"}, toSlot, nil, ""},
		{"INFO", []interface{}{"cluster"}, toSlot, nil, ""},
		{"DEL", []interface{}{"requests.a"}, toSlot, []string{"requests.a"}, ""},
		{"DEL", []interface{}{"{x}1", "{x}2"}, toSlot, []string{"{x}1", "{x}2"}, ""},
		{"DEL", []interface{}{"a", "b"}, refused, nil, "different slots"},
		{"MSET", []interface{}{"{x}1", "v", "{x}2", "v"}, toSlot, []string{"{x}1", "{x}2"}, ""},
		{"MSET", []interface{}{"{x}1", "v", "{x}2"}, refused, nil, "pairs"},
		{"GET", []interface{}{"k"}, toSlot, []string{"k"}, ""},
		{"INCRBY", []interface{}{"k", 3}, toSlot, []string{"k"}, ""},
		{"DBSIZE", nil, toSlot, nil, ""},
		{"MULTI", nil, refused, nil, "state of one connection"},
		{"select", []interface{}{1}, refused, nil, "state of one connection"},
		{"SUBSCRIBE", []interface{}{"ch"}, refused, nil, "state of one connection"},
		{"", nil, toNowhere, nil, ""},
		{"", []interface{}{"x"}, refused, nil, "no argument"},
	}
	for i, tt := range tests {
		got := routeOf(tt.cmd, tt.args)
		if got.kind != tt.kind {
			t.Errorf("%d: %s %v: kind %d, want %d (err %v)", i, tt.cmd, tt.args, got.kind, tt.kind, got.err)
			continue
		}
		switch tt.kind {
		case toSlot:
			if strings.Join(got.keys, " ") != strings.Join(tt.keys, " ") {
				t.Errorf("%d: %s %v: keys %q, want %q", i, tt.cmd, tt.args, got.keys, tt.keys)
			}
			wantSlot := -1
			if len(tt.keys) > 0 {
				wantSlot = redisc.Slot(tt.keys[0])
			}
			if got.slot != wantSlot {
				t.Errorf("%d: %s %v: slot %d, want %d", i, tt.cmd, tt.args, got.slot, wantSlot)
			}
		case refused:
			if got.err == nil || !strings.HasPrefix(got.err.Error(), "cluster: ") || !strings.Contains(got.err.Error(), tt.why) {
				t.Errorf("%d: %s %v: error %v, want one with %q", i, tt.cmd, tt.args, got.err, tt.why)
			}
		}
	}
}

func TestKeyString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   interface{}
		want string
	}{
		{"k", "k"},
		{[]byte("k"), "k"},
		{42, "42"},
		{int64(-7), "-7"},
		{1.5, "1.5"},
		{true, "1"},
		{false, "0"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := keyString(tt.in); got != tt.want {
			t.Errorf("keyString(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
