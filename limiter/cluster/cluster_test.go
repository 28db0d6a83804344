package cluster_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
	"go.uber.org/goleak"

	"github.com/go-floodgate/floodgate/internal/redistest"
	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/cluster"
	"github.com/go-floodgate/floodgate/scripts"
)

func TestMain(m *testing.M) { redistest.Main(m) }

var _ limiter.Pool = (*cluster.Cluster)(nil)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connect returns a Cluster over rc, given only its first node (the others
// must be discovered), closed when the test ends.
func connect(t *testing.T, rc *redistest.Cluster, cfg cluster.Config) *cluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg.Addrs = rc.Addrs()[:1]
	c, err := cluster.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// keyOn returns a random limiter key whose counter lives on node i.
func keyOn(t *testing.T, rc *redistest.Cluster, i int) string {
	t.Helper()
	for {
		k := redistest.Key(t)
		if rc.NodeOf(t, limiter.DefaultPrefix+k) == i {
			return k
		}
	}
}

// keysOn returns n random keys spread over every node, and the node of each.
func keysOn(t *testing.T, rc *redistest.Cluster, n int) (keys []string, node []int) {
	t.Helper()
	perNode := make([]int, len(rc.Nodes))
	for i := 0; i < n; i++ {
		k := redistest.Key(t)
		nd := rc.NodeOf(t, limiter.DefaultPrefix+k)
		keys, node = append(keys, k), append(node, nd)
		perNode[nd]++
	}
	for i, c := range perNode {
		if c == 0 {
			t.Fatalf("no key of %d on node %d: rerun", n, i)
		}
	}
	return keys, node
}

// TestShared runs the tests that may share one cluster.
func TestShared(t *testing.T) {
	t.Parallel()
	rc := redistest.StartCluster(t, 3)
	c := connect(t, rc, cluster.Config{})
	t.Run("ExactAcrossSlots", func(t *testing.T) { t.Parallel(); testExactAcrossSlots(t, rc) })
	t.Run("AllowAll", func(t *testing.T) { t.Parallel(); testAllowAll(t, rc, c) })
	t.Run("PingAndReset", func(t *testing.T) { t.Parallel(); testPingAndReset(t, rc, c) })
	t.Run("Refused", func(t *testing.T) { t.Parallel(); testRefused(t, c) })
	t.Run("IsCluster", func(t *testing.T) { t.Parallel(); testIsCluster(t, rc) })
}

// testExactAcrossSlots: 200 keys over every node, several clients (as
// several app instances) with several goroutines each: exactly the limit is
// admitted per key, and nothing errs.
func testExactAcrossSlots(t *testing.T, rc *redistest.Cluster) {
	const nkeys, clients, goroutines, rounds, limit = 200, 2, 6, 3, 7
	keys, _ := keysOn(t, rc, nkeys)
	ctx := ctxT(t)
	allowed := make([]atomic.Int64, nkeys)
	var denied, errs atomic.Int64
	var wg sync.WaitGroup
	for cl := 0; cl < clients; cl++ {
		lim := limiter.New(connect(t, rc, cluster.Config{}))
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := 0; r < rounds; r++ {
					for _, i := range rand.Perm(nkeys) {
						res, err := lim.Allow(ctx, keys[i], limiter.PerMinute(limit))
						switch {
						case err != nil:
							if errs.Add(1) <= 5 {
								t.Error(err)
							}
						case res.Allowed:
							allowed[i].Add(1)
						default:
							denied.Add(1)
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	for i := range allowed {
		if got := allowed[i].Load(); got != limit {
			t.Errorf("key %d (%s): %d allowed, want %d", i, keys[i], got, limit)
		}
	}
	if want := int64(nkeys * (clients*goroutines*rounds - limit)); errs.Load() != 0 || denied.Load() != want {
		t.Errorf("denied %d, errors %d; want denied %d, errors 0", denied.Load(), errs.Load(), want)
	}
}

// testAllowAll decides batches whose keys are on every node, step by step.
func testAllowAll(t *testing.T, rc *redistest.Cluster, c *cluster.Cluster) {
	const limit = 4
	lim := limiter.New(c)
	ctx := ctxT(t)
	keys, _ := keysOn(t, rc, 30)
	reqs := make([]limiter.Request, len(keys))
	for i, k := range keys {
		reqs[i] = limiter.Request{Key: k, Limit: limiter.PerMinute(limit)}
	}
	for step := 1; step <= limit+1; step++ {
		res, err := lim.AllowAll(ctx, reqs...)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if len(res) != len(reqs) {
			t.Fatalf("step %d: %d results, want %d", step, len(res), len(reqs))
		}
		for i, r := range res {
			wantAllowed, wantRemaining := step <= limit, max(limit-step, 0)
			if r.Allowed != wantAllowed || r.Remaining != wantRemaining {
				t.Errorf("step %d: request %d: got %+v, want allowed=%v remaining=%d", step, i, r, wantAllowed, wantRemaining)
			}
		}
	}

	// One key twice and costs above 1, in one batch, across nodes: decided in
	// order, each on its own.
	a, b := keyOn(t, rc, 0), keyOn(t, rc, 2)
	l := limiter.PerMinute(5)
	res, err := lim.AllowAll(ctx,
		limiter.Request{Key: a, Limit: l},
		limiter.Request{Key: b, Limit: l, N: 3},
		limiter.Request{Key: a, Limit: l, N: 2},
		limiter.Request{Key: b, Limit: l, N: 3},
		limiter.Request{Key: a, Limit: l},
	)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		allowed   bool
		remaining int
	}{{true, 4}, {true, 2}, {true, 2}, {false, 2}, {true, 1}}
	for i, w := range want {
		if res[i].Allowed != w.allowed || res[i].Remaining != w.remaining {
			t.Errorf("request %d: got %+v, want allowed=%v remaining=%d", i, res[i], w.allowed, w.remaining)
		}
	}
}

func testPingAndReset(t *testing.T, rc *redistest.Cluster, c *cluster.Cluster) {
	lim := limiter.New(c)
	ctx := ctxT(t)
	if err := lim.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	l := limiter.PerMinute(3)
	for node := range rc.Nodes {
		k := keyOn(t, rc, node)
		for i := 0; i < 3; i++ {
			if _, err := lim.Allow(ctx, k, l); err != nil {
				t.Fatal(err)
			}
		}
		if err := lim.Reset(ctx, k); err != nil {
			t.Fatalf("node %d: %v", node, err)
		}
		if n := rc.Nodes[node].Int(t, "EXISTS", limiter.DefaultPrefix+k); n != 0 {
			t.Errorf("node %d: the counter is still there after Reset", node)
		}
		res, err := lim.Allow(ctx, k, l)
		if err != nil || !res.Allowed || res.Remaining != 2 {
			t.Errorf("node %d: after Reset: got %+v, %v; want allowed, remaining 2", node, res, err)
		}
	}
}

// testRefused: what would be CROSSSLOT, or would need one connection's
// state, is refused before anything is sent.
func testRefused(t *testing.T, c *cluster.Cluster) {
	ctx := ctxT(t)
	conn, err := c.GetContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, ok := conn.(redis.ConnWithContext); !ok {
		t.Fatal("the connection does not implement redis.ConnWithContext")
	}
	a, b := redistest.Key(t), redistest.Key(t)
	for redisc.Slot(a) == redisc.Slot(b) {
		b = redistest.Key(t)
	}
	tag := "{" + redistest.Key(t) + "}"
	for _, tt := range []struct {
		cmd     string
		args    []interface{}
		refused bool
	}{
		{"EVAL", []interface{}{"return #KEYS", 2, a, b}, true},
		{"DEL", []interface{}{a, b}, true},
		{"MULTI", nil, true},
		{"SELECT", []interface{}{0}, true},
		{"EVAL", []interface{}{"return #KEYS", 2, tag + "a", tag + "b"}, false},
		{"DEL", []interface{}{tag + "a", tag + "b"}, false},
		{"ECHO", []interface{}{"hi"}, false},
	} {
		_, err := redis.DoContext(conn, ctx, tt.cmd, tt.args...)
		var rerr redis.Error
		switch {
		case errors.As(err, &rerr):
			t.Errorf("%s %v: Redis answered %v; want no error reply (CROSSSLOT must never reach Redis)", tt.cmd, tt.args, err)
		case tt.refused && (err == nil || !strings.Contains(err.Error(), "refused")):
			t.Errorf("%s %v: error %v, want a refusal", tt.cmd, tt.args, err)
		case !tt.refused && err != nil:
			t.Errorf("%s %v: %v", tt.cmd, tt.args, err)
		}
	}
	// In a pipeline, a refused command gets its error in its place.
	if err := conn.Send("ECHO", "1"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Send("DEL", a, b); err != nil {
		t.Fatal(err)
	}
	if err := conn.Send("ECHO", "3"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"1", "", "3"} {
		v, err := redis.String(redis.ReceiveContext(conn, ctx))
		if want == "" {
			if err == nil || !strings.Contains(err.Error(), "refused") {
				t.Errorf("reply %d: %q, %v; want a refusal", i, v, err)
			}
		} else if err != nil || v != want {
			t.Errorf("reply %d: %q, %v; want %q", i, v, err, want)
		}
	}
	// As with redigo, Do reads the replies of what was sent before its own,
	// and the blank command only those.
	for _, cmd := range []string{"", "ECHO"} {
		if err := conn.Send("ECHO", "sent"); err != nil {
			t.Fatal(err)
		}
		var args []interface{}
		want := "sent"
		if cmd != "" {
			args, want = []interface{}{"done"}, "done"
		}
		if v, err := redis.String(redis.DoContext(conn, ctx, cmd, args...)); err != nil || v != want {
			t.Errorf("Do(%q) after Send: %q, %v; want %q", cmd, v, err, want)
		}
	}
	if _, err := redis.ReceiveContext(conn, ctx); err == nil {
		t.Errorf("Receive with nothing sent: no error")
	}
}

func testIsCluster(t *testing.T, rc *redistest.Cluster) {
	tests := []struct {
		name string
		dial func(context.Context) (redis.Conn, error)
		want bool
	}{
		{"cluster node", rc.Nodes[1].DialContext, true},
		{"plain Redis", redistest.Shared(t).DialContext, false},
	}
	for _, tt := range tests {
		ctx := ctxT(t)
		conn, err := tt.dial(ctx)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got, err := cluster.IsCluster(ctx, conn)
		conn.Close()
		if err != nil || got != tt.want {
			t.Errorf("%s: IsCluster = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
}

func TestNewFails(t *testing.T) {
	t.Parallel()
	plain := redistest.Shared(t)
	tests := []struct {
		name  string
		addrs []string
		want  string
	}{
		{"no address", nil, "no start-up node"},
		{"nothing listens", []string{"127.0.0.1:1"}, "refused"},
		{"not a cluster", []string{plain.Addr}, "cluster support disabled"},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := cluster.New(ctx, cluster.Config{Addrs: tt.addrs, DialOptions: dialOpts(plain, tt.addrs)})
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("%s: New succeeded", tt.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "cluster: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want an error with %q", tt.name, err, tt.want)
		}
	}
}

// dialOpts returns the options to reach plain when it is among addrs and came
// from REDIS_URL (which may need a password or TLS).
func dialOpts(plain *redistest.Server, addrs []string) []redis.DialOption {
	if plain.How != "REDIS_URL" || len(addrs) == 0 || addrs[0] != plain.Addr {
		return nil
	}
	_, opts, _ := cluster.ParseURL(plain.URL)
	return opts
}

// TestScriptCache: Load puts the script on every master; after SCRIPT FLUSH
// on every node, decisions (single and batched) heal it by themselves and
// count on.
func TestScriptCache(t *testing.T) {
	t.Parallel()
	rc := redistest.StartCluster(t, 3)
	c := connect(t, rc, cluster.Config{})
	lim := limiter.New(c)
	ctx := ctxT(t)
	sha := redis.NewScript(scripts.FixedWindowKeys, scripts.FixedWindow).Hash()
	exists := func(node int) int {
		v, err := redis.Ints(rc.Nodes[node].Do(t, "SCRIPT", "EXISTS", sha), nil)
		if err != nil || len(v) != 1 {
			t.Fatalf("node %d: SCRIPT EXISTS: %v, %v", node, v, err)
		}
		return v[0]
	}
	flush := func() {
		for i, s := range rc.Nodes {
			s.Do(t, "SCRIPT", "FLUSH")
			if exists(i) != 0 {
				t.Fatalf("node %d still has the script after SCRIPT FLUSH", i)
			}
		}
	}

	flush()
	if err := lim.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range rc.Nodes {
		if exists(i) != 1 {
			t.Errorf("node %d: no script after Load", i)
		}
	}

	const limit = 10
	keys, _ := keysOn(t, rc, 30)
	check := func(step string, remaining int, res limiter.Result, err error) {
		t.Helper()
		if err != nil || !res.Allowed || res.Remaining != remaining {
			t.Fatalf("%s: got %+v, %v; want allowed, remaining %d", step, res, err, remaining)
		}
	}
	for round := 1; round <= 2; round++ {
		for _, k := range keys {
			res, err := lim.Allow(ctx, k, limiter.PerMinute(limit))
			check("Allow", limit-round, res, err)
		}
		flush() // the next round must heal it
	}
	reqs := make([]limiter.Request, len(keys))
	for i, k := range keys {
		reqs[i] = limiter.Request{Key: k, Limit: limiter.PerMinute(limit)}
	}
	for round := 3; round <= 4; round++ {
		res, err := lim.AllowAll(ctx, reqs...)
		if err != nil {
			t.Fatalf("AllowAll after SCRIPT FLUSH: %v", err)
		}
		for i := range res {
			check("AllowAll", limit-round, res[i], nil)
		}
		for i := range rc.Nodes {
			if exists(i) != 1 {
				t.Errorf("node %d: the script was not cached again", i)
			}
		}
		flush()
	}

	// SCRIPT EXISTS through the cluster: 1 only when every master has it.
	if err := lim.Load(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := c.GetContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, flushOne := range []bool{false, true} {
		if flushOne {
			rc.Nodes[1].Do(t, "SCRIPT", "FLUSH")
		}
		got, err := redis.Ints(redis.DoContext(conn, ctx, "SCRIPT", "EXISTS", sha))
		if want := []int{1}; flushOne {
			want = []int{0}
			if err != nil || len(got) != 1 || got[0] != want[0] {
				t.Errorf("SCRIPT EXISTS with one master flushed: %v, %v; want %v", got, err, want)
			}
		} else if err != nil || len(got) != 1 || got[0] != want[0] {
			t.Errorf("SCRIPT EXISTS: %v, %v; want %v", got, err, want)
		}
	}
}

// TestMasterRestart: while a master is down, only its keys fail; the others
// keep exact counts; once it is back, its keys are decided again (their
// counters start over: nodes persist nothing here), within a few seconds.
func TestMasterRestart(t *testing.T) {
	t.Parallel()
	rc := redistest.StartCluster(t, 3)
	c := connect(t, rc, cluster.Config{})
	lim := limiter.New(c)
	ctx := ctxT(t)
	const dead, limit = 1, 5
	l := limiter.PerMinute(limit)
	keys, node := keysOn(t, rc, 60)
	for _, k := range keys {
		for i := 0; i < 3; i++ {
			if _, err := lim.Allow(ctx, k, l); err != nil {
				t.Fatal(err)
			}
		}
	}
	probes := make([]string, len(rc.Nodes)) // hammered during the outage
	for i := range probes {
		probes[i] = keyOn(t, rc, i)
	}

	// Hammer the probe keys from the kill until after the restart: a probe on
	// a live node must never fail, and no answer may be wrong.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var probeErrs [3]atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i, k := range probes {
					pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
					res, err := lim.Allow(pctx, k, limiter.PerMinute(1<<30))
					cancel()
					switch {
					case err != nil && i != dead:
						t.Errorf("probe on live node %d: %v", i, err)
					case err != nil:
						probeErrs[i].Add(1)
					case !res.Allowed:
						t.Errorf("probe on node %d: denied under a limit it cannot reach: %+v", i, res)
					}
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}

	rc.KillNode(t, dead)
	time.Sleep(200 * time.Millisecond)
	for i, k := range keys {
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		res, err := lim.Allow(dctx, k, l)
		cancel()
		if node[i] == dead {
			if err == nil {
				t.Errorf("key %d on the dead node: got %+v, want an error", i, res)
			}
			continue
		}
		if err != nil || !res.Allowed || res.Remaining != 1 {
			t.Errorf("key %d on live node %d: got %+v, %v; want allowed, remaining 1", i, node[i], res, err)
		}
	}
	var live []limiter.Request
	deadKey := ""
	for i, k := range keys {
		if node[i] != dead {
			live = append(live, limiter.Request{Key: k, Limit: l})
		} else if deadKey == "" {
			deadKey = k
		}
	}
	if res, err := lim.AllowAll(ctx, live...); err != nil {
		t.Errorf("AllowAll of keys on live nodes during the outage: %v", err)
	} else {
		for i, r := range res {
			if !r.Allowed || r.Remaining != 0 {
				t.Errorf("AllowAll during the outage: result %d: %+v, want allowed, remaining 0", i, r)
			}
		}
	}
	if _, err := lim.AllowAll(ctx,
		limiter.Request{Key: probes[0], Limit: limiter.PerMinute(1 << 30)},
		limiter.Request{Key: deadKey, Limit: l},
	); err == nil {
		t.Errorf("AllowAll with a key on the dead node succeeded")
	}
	time.Sleep(500 * time.Millisecond)

	restarted := time.Now()
	rc.RestartNode(t, dead)
	fresh := keyOn(t, rc, dead)
	var res limiter.Result
	var err error
	for {
		if res, err = lim.Allow(ctx, fresh, l); err == nil {
			break
		}
		if time.Since(restarted) > 15*time.Second {
			t.Fatalf("no decision on the restarted node %v after: %v", time.Since(restarted), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("decisions on the restarted node again %v after the restart began", time.Since(restarted).Round(time.Millisecond))
	if !res.Allowed || res.Remaining != limit-1 {
		t.Errorf("fresh key on the restarted node: %+v, want allowed, remaining %d", res, limit-1)
	}
	close(stop)
	wg.Wait()
	if probeErrs[dead].Load() == 0 {
		t.Errorf("the probe on the dead node never failed: was it down?")
	}

	// The live nodes' keys have spent 3 + 1 + 1 = 5; the dead node's keys
	// start a new window (the node lost its data).
	for i, k := range keys {
		res, err := lim.Allow(ctx, k, l)
		wantAllowed, wantRemaining := false, 0
		if node[i] == dead {
			wantAllowed, wantRemaining = true, limit-1
		}
		if err != nil || res.Allowed != wantAllowed || res.Remaining != wantRemaining {
			t.Errorf("key %d on node %d after the restart: got %+v, %v; want allowed=%v remaining=%d",
				i, node[i], res, err, wantAllowed, wantRemaining)
		}
	}
}

// TestSlotMigration moves a slot while it is in use: during the migration
// the source answers ASK for keys it no longer has, after it MOVED; counters
// move with their slot and decisions go on exactly.
func TestSlotMigration(t *testing.T) {
	t.Parallel()
	rc := redistest.StartCluster(t, 3)
	c := connect(t, rc, cluster.Config{})
	lim := limiter.New(c)
	ctx := ctxT(t)
	const limit = 10
	l := limiter.PerMinute(limit)
	tag := "{" + redistest.Key(t) + "}"
	a, b := tag+".a", tag+".b" // one slot
	slot := redisc.Slot(limiter.DefaultPrefix + a)
	from := rc.SlotOwner(t, slot)
	to := (from + 1) % len(rc.Nodes)

	steps := []struct {
		do        func()
		key       string
		remaining int
	}{
		{nil, a, 9},
		{nil, a, 8},
		{func() { rc.BeginSlotMigration(t, slot, to) }, a, 7}, // still on the source
		{nil, b, 9}, // new: ASK, created on the target
		{nil, b, 8}, // on the target: ASK again
		{nil, a, 6},
		{func() { rc.FinishSlotMigration(t, slot, to) }, a, 5}, // MOVED; the counter moved
		{nil, b, 7},
	}
	for i, s := range steps {
		if s.do != nil {
			s.do()
		}
		res, err := lim.Allow(ctx, s.key, l)
		if err != nil || !res.Allowed || res.Remaining != s.remaining {
			t.Fatalf("step %d: got %+v, %v; want allowed, remaining %d", i, res, err, s.remaining)
		}
	}
	if got := rc.Nodes[to].Int(t, "GET", limiter.DefaultPrefix+a); got != limit-5 {
		t.Errorf("counter on the target = %d, want %d", got, limit-5)
	}

	// Batches in the middle of a migration (ASK) and after one (MOVED), with
	// a key on another slot in each.
	other := keyOn(t, rc, to)
	slot2 := redisc.Slot(limiter.DefaultPrefix + other)
	for slot2 == slot {
		other = keyOn(t, rc, to)
		slot2 = redisc.Slot(limiter.DefaultPrefix + other)
	}
	c2 := tag + ".c"
	steps2 := []struct {
		do   func()
		reqs []string
		want []int
	}{
		{func() { rc.BeginSlotMigration(t, slot, from) }, []string{a, other, c2, b}, []int{4, 9, 9, 6}},
		{func() { rc.FinishSlotMigration(t, slot, from) }, []string{c2, a, other}, []int{8, 3, 8}},
		{func() { rc.MigrateSlot(t, slot2, from) }, []string{other, b}, []int{7, 5}},
	}
	for i, s := range steps2 {
		s.do()
		reqs := make([]limiter.Request, len(s.reqs))
		for j, k := range s.reqs {
			reqs[j] = limiter.Request{Key: k, Limit: l}
		}
		res, err := lim.AllowAll(ctx, reqs...)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		for j := range res {
			if !res[j].Allowed || res[j].Remaining != s.want[j] {
				t.Errorf("batch %d: request %d: got %+v, want allowed, remaining %d", i, j, res[j], s.want[j])
			}
		}
	}
}

// TestDeadlineAgainstPausedNode: with one node stopped (SIGSTOP), a decision
// for a key there returns by its context's deadline (or cancellation), keys
// on other nodes are decided as usual, and once the node resumes, its keys
// are decided again. Nothing is left running afterwards. Not parallel, so
// that the timing and the goroutine count are this test's alone.
func TestDeadlineAgainstPausedNode(t *testing.T) {
	rc := redistest.StartCluster(t, 3)
	ignore := goleak.IgnoreCurrent()
	ctx := ctxT(t)
	newLimiter := func() (*limiter.Limiter, *cluster.Cluster) {
		c, err := cluster.New(ctx, cluster.Config{Addrs: rc.Addrs()})
		if err != nil {
			t.Fatal(err)
		}
		return limiter.New(c), c
	}
	lim, c := newLimiter()
	const paused = 1
	l := limiter.PerMinute(1000)
	kp, ko := keyOn(t, rc, paused), keyOn(t, rc, 0)
	for _, k := range []string{kp, ko} { // connections in the pools
		if _, err := lim.Allow(ctx, k, l); err != nil {
			t.Fatal(err)
		}
	}

	rc.Nodes[paused].Pause(t)
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			rc.Nodes[paused].Resume(t)
		}
	})
	cold, coldC := newLimiter() // no connection yet: it must dial the paused node
	const budget, slack = 150 * time.Millisecond, 250 * time.Millisecond
	tests := []struct {
		name     string
		cancel   bool // cancel at budget, rather than a deadline
		decide   func(context.Context) error
		wantFail bool
	}{
		{"Allow", false, func(ctx context.Context) error { _, err := lim.Allow(ctx, kp, l); return err }, true},
		{"Allow canceled", true, func(ctx context.Context) error { _, err := lim.Allow(ctx, kp, l); return err }, true},
		{"Allow cold", false, func(ctx context.Context) error { _, err := cold.Allow(ctx, kp, l); return err }, true},
		{"AllowAll", false, func(ctx context.Context) error {
			_, err := lim.AllowAll(ctx, limiter.Request{Key: ko, Limit: l}, limiter.Request{Key: kp, Limit: l})
			return err
		}, true},
		{"AllowAll canceled", true, func(ctx context.Context) error {
			_, err := lim.AllowAll(ctx, limiter.Request{Key: kp, Limit: l}, limiter.Request{Key: ko, Limit: l})
			return err
		}, true},
		{"Reset", false, func(ctx context.Context) error { return lim.Reset(ctx, kp) }, true},
		{"Allow elsewhere", false, func(ctx context.Context) error { _, err := lim.Allow(ctx, ko, l); return err }, false},
		{"AllowAll elsewhere", false, func(ctx context.Context) error {
			_, err := lim.AllowAll(ctx, limiter.Request{Key: ko, Limit: l}, limiter.Request{Key: keyOn(t, rc, 2), Limit: l})
			return err
		}, false},
	}
	for _, tt := range tests {
		var dctx context.Context
		var cancel context.CancelFunc
		if tt.cancel {
			dctx, cancel = context.WithCancel(ctx)
			time.AfterFunc(budget, cancel)
		} else {
			dctx, cancel = context.WithTimeout(ctx, budget)
		}
		start := time.Now()
		err := tt.decide(dctx)
		took := time.Since(start)
		cancel()
		t.Logf("%s: %v after %v", tt.name, err, took.Round(time.Millisecond))
		switch {
		case tt.wantFail && err == nil:
			t.Errorf("%s: no error with the node paused", tt.name)
		case tt.wantFail && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
			t.Errorf("%s: %v; want the context's error", tt.name, err)
		case !tt.wantFail && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		}
		if took > budget+slack {
			t.Errorf("%s: returned after %v; want by %v (+%v slack)", tt.name, took, budget, slack)
		}
	}

	rc.Nodes[paused].Resume(t)
	resumed = true
	start := time.Now()
	for {
		_, err := lim.Allow(ctx, kp, l)
		if err == nil {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no decision on the resumed node after %v: %v", time.Since(start), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Close()
	coldC.Close()
	goleak.VerifyNone(t, ignore)
}
