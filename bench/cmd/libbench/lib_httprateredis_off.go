//go:build !httprateredis

package main

// httprateRedis stands in for lib_httprateredis.go, which needs a module the
// Go module proxy this bench was written against refuses to serve.
var httprateRedis = library{
	name:        "go-chi/httprate-redis (LimitCounter)",
	slug:        "httprate",
	unavailable: "module github.com/go-chi/httprate-redis refused by the Go module proxy here (403 \"This module version is not available\", every version); go get it and build with -tags httprateredis",
}
