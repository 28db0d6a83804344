// Package scripts holds floodgate's Redis Lua scripts, embedded in the binary
// with go:embed so that a build always carries the script it was tested with.
//
// Each script's file opens with its contract: KEYS, ARGV and the reply. The
// package has no other code; package limiter turns each source into a
// redigo Script and decodes its replies.
package scripts

import _ "embed"

// FixedWindow is the source of fixed_window.lua: one atomic fixed-window
// decision. KEYS[1] is the counter; ARGV is limit, window in milliseconds and
// cost; the reply is {count, ttl in milliseconds}.
//
//go:embed fixed_window.lua
var FixedWindow string

// FixedWindowKeys is the number of keys FixedWindow takes.
const FixedWindowKeys = 1
