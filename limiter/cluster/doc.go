// Package cluster runs floodgate's limiter on Redis Cluster.
//
// A *Cluster is a limiter.Pool over every master of a cluster, built on
// github.com/mna/redisc (which keeps the map of hash slots to nodes and a
// redigo pool per node), so that limiter.New works unchanged:
//
//	c, err := cluster.New(ctx, cluster.Config{Addrs: []string{"10.0.0.1:6379"}})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	lim := limiter.New(c, limiter.WithTimeout(100*time.Millisecond))
//
// IsCluster tells whether the Redis behind a connection is a cluster node, so
// that a service can pick a *Cluster or a plain *redis.Pool by itself, and
// ParseURL turns a redis:// or rediss:// URL into the Config's address and
// dial options.
//
// # Routing
//
// A connection from GetContext is not bound to one node: each command goes
// where its key lives.
//
//   - EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, FCALL and FCALL_RO go to the master
//     of their keys' slot (the keys are the numkeys arguments after the script
//     or its SHA1, never the SHA1 itself); with no key, to any master.
//   - SCRIPT LOAD, SCRIPT FLUSH and SCRIPT EXISTS go to every master: LOAD
//     replies with the SHA1 all of them agree on, EXISTS with 1 only for a
//     script every master has.
//   - PING, ECHO, TIME, INFO, COMMAND and CLUSTER go to any one master.
//   - DEL, UNLINK, EXISTS, TOUCH and MGET take every argument as a key;
//     MSET and MSETNX every other one.
//   - Any other command takes its first argument as its key.
//
// Keys of one command must share a slot (use a {hash tag}): a command whose
// keys do not is refused before anything is sent, so Redis never answers
// CROSSSLOT. Commands whose effect is the state of one connection (MULTI,
// WATCH, SELECT, AUTH, SUBSCRIBE, READONLY and the like) are refused, since
// successive commands may use different node connections.
//
// MOVED and ASK replies are followed (at most Config.MaxRedirects times per
// command; MOVED also refreshes the slot map in the background), and TRYAGAIN
// is retried after a short pause. Since redigo's Script.DoContext answers
// NOSCRIPT with EVAL on the same connection, and that EVAL goes to the same
// node, each node's script cache heals by itself after a restart or a SCRIPT
// FLUSH.
//
// # Pipelines
//
// Send queues a command; Flush starts every queued command, grouped by node:
// one pipeline per master, the masters concurrently; Receive returns the
// replies in the order of Send. A reply that is an error from Redis is a
// redis.Error, as on one Redis; a command whose node could not be reached
// gets a transport error, and the commands on other nodes are not affected.
// Nothing is sent before Flush (or Receive, which flushes what was sent),
// and commands sent but never flushed are dropped by Close.
//
// # Contexts and time
//
// DoContext and ReceiveContext return when their context is done, at its
// deadline and not later (a few milliseconds for the scheduler aside),
// whatever the node does: a node that is paused, slow or unreachable costs
// the caller its budget, not more. The work in flight goes on in the
// background only until the same deadline (reads are bounded by it), or for
// steps a deadline cannot cut short (dialing, TLS, AUTH) until the Config's
// connect and read timeouts. Do, Flush and Receive, which take no context,
// are bounded by the context given to GetContext.
//
// A Cluster is safe for concurrent use. A connection, as a redigo one, is
// meant for one goroutine at a time.
package cluster
