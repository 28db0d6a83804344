// Package limiter is an atomic fixed-window rate limiter on Redis.
//
// A decision is one round trip: the script in package scripts runs by EVALSHA
// (falling back to EVAL when Redis has lost its script cache) and, in one atomic
// step, creates the window's counter with the window as its expiry, spends the
// request's cost and replies with the count and the time left in the window.
// Time is read from Redis, never from the application server's clock, so any
// number of application instances share exact limits.
//
// A Limiter is built over anything with redigo's GetContext method, such as a
// *redis.Pool, a pipelining Mux from package limiter/pipeline, or a cluster
// from package limiter/cluster:
//
//	pool := &redis.Pool{DialContext: func(ctx context.Context) (redis.Conn, error) {
//		return redis.DialContext(ctx, "tcp", "localhost:6379")
//	}}
//	lim := limiter.New(pool)
//	res, err := lim.Allow(ctx, "user-42", limiter.PerSecond(10))
//	if err == nil && !res.Allowed {
//		// answer 429 and ask the client to come back in res.RetryAfter
//	}
//
// The HTTP middleware in package limiter/httplimit writes the standard
// headers, 429 on denial and applies a failure policy to limiter errors.
package limiter
