// Package pipeline is automatic pipelining for redigo: a Mux shares a few
// Redis connections among any number of goroutines, so that many concurrent
// rate-limit decisions travel together in one write and one read.
//
// A *Mux has redigo's GetContext method, so it is a limiter.Pool:
//
//	mux := pipeline.New(pipeline.DialURL(os.Getenv("REDIS_URL"), redis.DialTLSSkipVerify(true)),
//		pipeline.WithHangTimeout(100*time.Millisecond))
//	defer mux.Close()
//	lim := limiter.New(mux)
//
// # Design
//
// The Mux owns a fixed number of connections (DefaultConns unless WithConns
// says otherwise), each dialed lazily by the first request that needs it.
// Every connection has two goroutines. Its writer takes whatever requests are
// queued, sends them all and flushes once: there is no timer and no waiting
// for company, so a lone request is written at once, and requests that arrive
// while a write is under way go out together in the next one. (On an idle
// connection, with nothing in flight or queued, the caller writes its own
// request rather than waking the writer; such a write is bounded by the hang
// timeout rather than by the caller's context, which matters only for a
// command too large for the socket's buffer.) Its reader reads
// replies and hands each to the request at the head of the connection's FIFO;
// a request joins that FIFO before it is written. The reader reads all the
// time, even when nothing is pending, so a connection that Redis closed (a
// restart, a kill, CLIENT KILL, an idle timeout) is noticed at once and never
// used again.
//
// While requests are pending, the reader's deadline is the oldest pending
// request's send time plus the hang timeout (DefaultHangTimeout unless
// WithHangTimeout says otherwise). When Redis stays silent that long, or the
// connection fails in any way, the Mux closes the connection, answers every
// request pending on it at once with an error, and forgets it; the next
// request dials a new one. Requests that were still queued and had never been
// written are sent once more, on a live or new connection, since Redis never
// saw them (unless the connection hung: then they fail too). A failed dial
// fails the requests that were waiting for it, at once, with the dial's
// error. Nothing dials in a loop: only requests cause dials, one dial per
// connection at a time.
//
// The writer never waits for a batch to fill, but when requests are already
// in flight on its connection it yields once (runtime.Gosched) before taking
// the queue, so that goroutines just handed their replies can queue their
// next requests into the same write; on an idle connection it writes at once.
// Stats reports the mean batch (Sent/Flushes).
//
// Requests honour their contexts: a call whose context ends returns the
// context's error at once, and its reply, when it comes, is dropped. No
// goroutine is started per request; requests, their reply channels and the
// timers DoTimeout bounds them with are pooled.
//
// # Connections
//
// GetContext returns a cheap handle that implements redis.Conn,
// redis.ConnWithContext and redis.ConnWithTimeout. Do and DoContext send one
// command through the Mux. Send queues commands in the handle, Flush submits
// them together (they go out adjacent in one connection's stream) and Receive
// returns their replies in order, which is what limiter.AllowAll does. The
// Mux's own DoTimeout sends one command without a handle, bounded by a
// timeout without deriving a context from the caller's; limiter.AllowN uses
// it, which spares each decision the handle, the derived context and its
// timer. A Redis
// error reply is returned as that command's redis.Error exactly as redigo's own
// connection returns it, so redis.Script's EVALSHA-then-EVAL fallback works
// unchanged. Because connections are shared, commands that change or block a
// connection (SELECT, AUTH, HELLO, MULTI/EXEC, WATCH, SUBSCRIBE, blocking pops,
// CLIENT, …) are refused with an error wrapping ErrRefused; choose the database
// and credentials in the dial options instead.
//
// # Goroutine safety
//
// A Mux is safe for concurrent use by any number of goroutines. A handle from
// GetContext is not: like redigo's connections it belongs to one goroutine at a
// time, and unlike them it does not allow a concurrent sender and receiver.
// Closing a handle is cheap; get one per operation. The zero Mux is not
// usable: build one with New.
package pipeline
