//go:build !rueidislimiter

package main

// rueidisLimiter stands in for lib_rueidislimiter.go, which needs a module
// the Go module proxy this bench was written against does not serve.
var rueidisLimiter = library{
	name:        "rueidislimiter",
	slug:        "rueidislimiter",
	unavailable: "module github.com/redis/rueidis/rueidislimiter not served by the Go module proxy here (404 for every version, v1.0.59–v1.0.80); go get it and build with -tags rueidislimiter",
}
