package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/go-floodgate/floodgate/scripts"
)

// rueidisOption is the client configuration of both rueidis contenders:
// rueidis's defaults (auto-pipelining over 2^2 connections), with
// client-side caching off since no decision reads through the cache.
func rueidisOption(cfg *config) rueidis.ClientOption {
	return rueidis.ClientOption{
		InitAddress:  []string{cfg.addr},
		DisableCache: true,
	}
}

// fixedWindowLua is floodgate's script as a rueidis Lua: EVALSHA, falling
// back to EVAL on NOSCRIPT.
var fixedWindowLua = rueidis.NewLuaScript(scripts.FixedWindow)

// rueidisScript runs floodgate's own fixed_window.lua through rueidis's
// auto-pipelining: the same script and server work as floodgate, with
// rueidis's client, to tell the client's share of the cost.
var rueidisScript = library{
	name: "rueidis + fixed_window.lua",
	slug: "rueidislua",
	note: "rueidis + fixed_window.lua: rueidis.NewLuaScript(scripts.FixedWindow).Exec, auto-pipelined (rueidis defaults, DisableCache).",
	setup: func(ctx context.Context, cfg *config, g int) (*decider, error) {
		c, err := rueidis.NewClient(rueidisOption(cfg))
		if err != nil {
			return nil, err
		}
		args := []string{
			strconv.Itoa(benchLimit),
			strconv.FormatInt(benchWindow.Milliseconds(), 10),
			"1",
		}
		return &decider{
			decide: func(ctx context.Context, key string) (bool, error) {
				vals, err := fixedWindowLua.Exec(ctx, c, []string{key}, args).AsIntSlice()
				if err != nil {
					return false, err
				}
				if len(vals) != 2 {
					return false, fmt.Errorf("reply has %d values, want 2", len(vals))
				}
				return vals[0] <= benchLimit, nil
			},
			close: c.Close,
		}, nil
	},
}
