package main

import (
	"context"

	"github.com/go-floodgate/floodgate/limiter/pipeline"
)

// floodgateMux runs floodgate's Limiter over the auto-pipelining
// *pipeline.Mux, with the Mux's defaults (DefaultConns connections, however
// many goroutines share them).
var floodgateMux = library{
	name: "floodgate (mux)",
	slug: "fgmux",
	note: "floodgate (mux): limiter.Allow over pipeline.New(pipeline.Dial(\"tcp\", addr)) with its defaults (pipeline.DefaultConns connections shared by all goroutines), limiter.WithTimeout(-timeout).",
	setup: func(ctx context.Context, cfg *config, g int) (*decider, error) {
		mux := pipeline.New(pipeline.Dial("tcp", cfg.addr))
		return floodgateDecider(ctx, cfg, mux, func() { mux.Close() })
	},
}
