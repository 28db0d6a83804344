package redistest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
)

// The cluster harness starts redis-server processes rather than containers.
// A cluster node announces the address it listens on, so containers would
// need host networking anyway; processes start in milliseconds where N
// containers take seconds, need no image, and give RestartNode a plain way to
// keep a node's port and nodes.conf (its identity and slots) across a
// restart. So it needs redis-server on PATH, and skips the test without it.
const clusterSkipHelp = "no Redis Cluster for this test: put redis-server (Redis 5 or later) on PATH; " +
	"the cluster harness starts processes, not containers, and ignores REDIS_URL"

// clusterNodeTimeout is each node's cluster-node-timeout: how long a silent
// node goes before the others mark it failing.
const clusterNodeTimeout = 2 * time.Second

// Cluster is a Redis Cluster of masters only (no replicas) owned by one test:
// redis-server processes on 127.0.0.1, stopped and deleted when the test
// ends. Slots are spread evenly: node i starts with the i-th of len(Nodes)
// equal ranges. Nodes run with cluster-require-full-coverage off, so a node
// that is down fails only the keys of its own slots.
//
// Each node is a Server the test owns: Nodes[i].Pause and Resume stop and
// continue its process (SIGSTOP, SIGCONT), Nodes[i].Do talks to it alone.
type Cluster struct {
	// Nodes are the masters, in the order of the slot ranges they started with.
	Nodes []*Server

	ids []string // node IDs, kept across restarts by nodes.conf
}

// StartCluster starts a Redis Cluster of the given number of masters, waits
// until every node reports it healthy, and stops it when the test ends. It
// skips the test when redis-server is not on PATH.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 1 || masters > 64 {
		t.Fatalf("redistest: StartCluster with %d masters; want 1 to 64", masters)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip(clusterSkipHelp + ": " + err.Error())
	}
	c := &Cluster{}
	t.Cleanup(c.stop)
	for i := 0; i < masters; i++ {
		s, err := startClusterNode()
		if err != nil {
			t.Fatalf("redistest: cluster node %d: %v", i, err)
		}
		c.Nodes = append(c.Nodes, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.create(ctx); err != nil {
		t.Fatalf("redistest: create cluster: %v", err)
	}
	c.WaitOK(t)
	return c
}

// Addrs returns the nodes' host:port addresses, in the order of Nodes.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		addrs[i] = s.Addr
	}
	return addrs
}

// NodeOf returns the index in Nodes of the master that holds key's slot, as
// the first node that answers sees it.
func (c *Cluster) NodeOf(t testing.TB, key string) int {
	t.Helper()
	return c.SlotOwner(t, redisc.Slot(key))
}

// SlotOwner returns the index in Nodes of the master that holds slot, as the
// first node that answers sees it (a killed or paused node is skipped).
func (c *Cluster) SlotOwner(t testing.TB, slot int) int {
	t.Helper()
	var errs []error
	for _, s := range c.Nodes {
		i, err := c.ownerSeenBy(s, slot)
		if err == nil {
			return i
		}
		errs = append(errs, err)
	}
	t.Fatalf("redistest: owner of slot %d: %v", slot, errors.Join(errs...))
	return -1
}

// KillNode ends node i at once (SIGKILL). Its slots fail until RestartNode.
func (c *Cluster) KillNode(t testing.TB, i int) {
	t.Helper()
	if err := c.Nodes[i].kill(); err != nil {
		t.Fatalf("redistest: kill cluster node %d: %v", i, err)
	}
}

// RestartNode kills node i if it runs, starts it again on the same port with
// the same nodes.conf, so that it rejoins the cluster with its ID and slots
// (but none of its data: nodes persist nothing), and waits until the whole
// cluster is healthy again. That takes about 2 seconds at least: a restarted
// master refuses its slots' commands (CLUSTERDOWN) for that long, Redis's
// delay before a rebooted master takes writes.
func (c *Cluster) RestartNode(t testing.TB, i int) {
	t.Helper()
	s := c.Nodes[i]
	if err := s.kill(); err != nil {
		t.Fatalf("redistest: restart cluster node %d: kill: %v", i, err)
	}
	if err := s.startProcess(); err != nil {
		t.Fatalf("redistest: restart cluster node %d: %v", i, err)
	}
	if err := s.waitNode(10 * time.Second); err != nil {
		t.Fatalf("redistest: restart cluster node %d: %v", i, err)
	}
	c.WaitOK(t)
}

// WaitOK waits until every node answers, reports cluster_state:ok with all
// slots served, and sees every other node connected and not failing.
func (c *Cluster) WaitOK(t testing.TB) {
	t.Helper()
	const within = 30 * time.Second
	deadline := time.Now().Add(within)
	for {
		err := c.healthy()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: cluster not healthy after %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MigrateSlot moves slot, with its keys, to node to, as redis-cli --cluster
// reshard does: BeginSlotMigration, then FinishSlotMigration.
func (c *Cluster) MigrateSlot(t testing.TB, slot, to int) {
	t.Helper()
	c.BeginSlotMigration(t, slot, to)
	c.FinishSlotMigration(t, slot, to)
}

// BeginSlotMigration marks slot as migrating from its owner to node to
// (CLUSTER SETSLOT IMPORTING on the target, MIGRATING on the source) and
// moves no key. Until FinishSlotMigration, the source serves the slot's keys
// it still has and answers ASK for the others.
func (c *Cluster) BeginSlotMigration(t testing.TB, slot, to int) {
	t.Helper()
	from := c.SlotOwner(t, slot)
	if from == to {
		t.Fatalf("redistest: slot %d is already on node %d", slot, to)
	}
	c.Nodes[to].Do(t, "CLUSTER", "SETSLOT", slot, "IMPORTING", c.ids[from])
	c.Nodes[from].Do(t, "CLUSTER", "SETSLOT", slot, "MIGRATING", c.ids[to])
}

// FinishSlotMigration moves the keys of slot left on its owner to node to
// (MIGRATE) and gives the slot to node to on every node (CLUSTER SETSLOT
// NODE), so that the old owner answers MOVED for it.
func (c *Cluster) FinishSlotMigration(t testing.TB, slot, to int) {
	t.Helper()
	from := c.SlotOwner(t, slot) // the source keeps the slot until SETSLOT NODE
	if from != to {
		src := c.Nodes[from]
		host, port, err := net.SplitHostPort(c.Nodes[to].Addr)
		if err != nil {
			t.Fatal(err)
		}
		for {
			keys, err := redis.Strings(src.Do(t, "CLUSTER", "GETKEYSINSLOT", slot, 100), nil)
			if err != nil {
				t.Fatalf("redistest: GETKEYSINSLOT: %v", err)
			}
			if len(keys) == 0 {
				break
			}
			args := []interface{}{host, port, "", 0, 5000, "KEYS"}
			for _, k := range keys {
				args = append(args, k)
			}
			src.Do(t, "MIGRATE", args...)
		}
	}
	// The target first, then the source, then the rest, as the cluster
	// tutorial says, so that no node sends a client back and forth.
	order := []int{to}
	if from != to {
		order = append(order, from)
	}
	for i := range c.Nodes {
		if i != to && i != from {
			order = append(order, i)
		}
	}
	for _, i := range order {
		c.Nodes[i].Do(t, "CLUSTER", "SETSLOT", slot, "NODE", c.ids[to])
	}
	for _, s := range c.Nodes {
		if got, err := c.ownerSeenBy(s, slot); err != nil || got != to {
			t.Fatalf("redistest: after migrating slot %d, node %s sees it on %d (%v); want %d", slot, s.Addr, got, err, to)
		}
	}
}

// create assigns each node its slots and a distinct config epoch, then has
// them meet.
func (c *Cluster) create(ctx context.Context) error {
	n := len(c.Nodes)
	c.ids = make([]string, n)
	for i, s := range c.Nodes {
		id, err := redis.String(s.try(ctx, "CLUSTER", "MYID"))
		if err != nil {
			return fmt.Errorf("node %s: CLUSTER MYID: %w", s.Addr, err)
		}
		c.ids[i] = id
		if _, err := s.try(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1); err != nil {
			return fmt.Errorf("node %s: CLUSTER SET-CONFIG-EPOCH: %w", s.Addr, err)
		}
		lo, hi := i*redisc.HashSlots/n, (i+1)*redisc.HashSlots/n
		args := []interface{}{"ADDSLOTS"}
		for slot := lo; slot < hi; slot++ {
			args = append(args, slot)
		}
		if _, err := s.try(ctx, "CLUSTER", args...); err != nil {
			return fmt.Errorf("node %s: CLUSTER ADDSLOTS %d-%d: %w", s.Addr, lo, hi-1, err)
		}
	}
	host, port, err := net.SplitHostPort(c.Nodes[0].Addr)
	if err != nil {
		return err
	}
	for _, s := range c.Nodes[1:] {
		if _, err := s.try(ctx, "CLUSTER", "MEET", host, port); err != nil {
			return fmt.Errorf("node %s: CLUSTER MEET: %w", s.Addr, err)
		}
	}
	return nil
}

// healthy reports why the cluster is not yet healthy, or nil.
func (c *Cluster) healthy() error {
	for _, s := range c.Nodes {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := redis.String(s.try(ctx, "CLUSTER", "INFO"))
		var nodes string
		if err == nil {
			nodes, err = redis.String(s.try(ctx, "CLUSTER", "NODES"))
		}
		cancel()
		if err != nil {
			return fmt.Errorf("node %s: %w", s.Addr, err)
		}
		for _, want := range []string{
			"cluster_state:ok",
			"cluster_slots_ok:" + strconv.Itoa(redisc.HashSlots),
			"cluster_known_nodes:" + strconv.Itoa(len(c.Nodes)),
		} {
			if !hasLine(info, want) {
				return fmt.Errorf("node %s: no %q in CLUSTER INFO", s.Addr, want)
			}
		}
		for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				return fmt.Errorf("node %s: CLUSTER NODES line %q", s.Addr, line)
			}
			for _, flag := range strings.Split(f[2], ",") {
				switch flag {
				case "fail", "fail?", "handshake", "noaddr":
					return fmt.Errorf("node %s sees %s as %s", s.Addr, f[1], flag)
				}
			}
			if f[7] != "connected" {
				return fmt.Errorf("node %s: link to %s is %s", s.Addr, f[1], f[7])
			}
		}
	}
	return nil
}

// ownerSeenBy returns the index of the node that s says holds slot.
func (c *Cluster) ownerSeenBy(s *Server, slot int) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ranges, err := redis.Values(s.try(ctx, "CLUSTER", "SLOTS"))
	if err != nil {
		return -1, fmt.Errorf("node %s: CLUSTER SLOTS: %w", s.Addr, err)
	}
	for _, r := range ranges {
		v, err := redis.Values(r, nil)
		if err != nil || len(v) < 3 {
			return -1, fmt.Errorf("node %s: CLUSTER SLOTS: malformed range %v", s.Addr, r)
		}
		lo, err1 := redis.Int(v[0], nil)
		hi, err2 := redis.Int(v[1], nil)
		master, err3 := redis.Values(v[2], nil)
		if err := errors.Join(err1, err2, err3); err != nil || len(master) < 2 {
			return -1, fmt.Errorf("node %s: CLUSTER SLOTS: malformed range %v", s.Addr, r)
		}
		if slot < lo || slot > hi {
			continue
		}
		host, err1 := redis.String(master[0], nil)
		port, err2 := redis.Int(master[1], nil)
		if err := errors.Join(err1, err2); err != nil {
			return -1, fmt.Errorf("node %s: CLUSTER SLOTS: malformed master %v", s.Addr, master)
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		for i, n := range c.Nodes {
			if n.Addr == addr {
				return i, nil
			}
		}
		return -1, fmt.Errorf("node %s: slot %d is on %s, not a node of this cluster", s.Addr, slot, addr)
	}
	return -1, fmt.Errorf("node %s: slot %d is not assigned", s.Addr, slot)
}

func (c *Cluster) stop() {
	for _, s := range c.Nodes {
		s.stop()
		clusterPorts.release(s.Addr)
	}
}

// startClusterNode starts one empty cluster-enabled redis-server on a port
// P whose cluster bus port P+10000 is free too. A port taken between the
// check and the start makes redis-server exit: another port is tried.
func startClusterNode() (*Server, error) {
	var errs []error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := clusterPorts.pick()
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "floodgate-redis-cluster-")
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s := &Server{
			Addr: addr, URL: "redis://" + addr, Owned: true, How: "redis-server", dir: dir,
			args: []string{
				"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
				"--save", "", "--appendonly", "no", "--protected-mode", "no",
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout / time.Millisecond)),
				"--cluster-require-full-coverage", "no",
			},
		}
		if err = s.startProcess(); err == nil {
			if err = s.waitNode(10 * time.Second); err == nil {
				return s, nil
			}
		}
		s.stop()
		clusterPorts.release(addr)
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// waitNode waits until the node's process answers PING, and fails at once
// if the process exits.
func (s *Server) waitNode(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if exited, err := s.exited(); exited {
			return fmt.Errorf("redis-server on %s exited (%v): %s", s.Addr, err, s.logTail())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := s.try(ctx, "PING")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not ready after %v: %w: %s", s.Addr, d, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exited reports whether the process has ended by itself, and forgets it if
// so (kill then has nothing to do).
func (s *Server) exited() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return true, errors.New("not running")
	}
	select {
	case err := <-s.waitErr:
		s.cmd = nil
		return true, err
	default:
		return false, nil
	}
}

// logTail returns the end of the process's log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return "no log: " + err.Error()
	}
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return "log: " + strings.TrimSpace(string(b))
}

// try runs one command on a fresh connection, bounded by ctx.
func (s *Server) try(ctx context.Context, cmd string, args ...interface{}) (interface{}, error) {
	c, err := s.DialContext(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return redis.DoContext(c, ctx, cmd, args...)
}

func hasLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

// clusterPorts hands out node ports in [15000, 22000), so that the bus ports
// (+10000) stay below Linux's ephemeral range (from 32768), and never the same
// port twice to clusters of one test binary.
var clusterPorts = &portSet{used: map[int]bool{}}

type portSet struct {
	mu   sync.Mutex
	used map[int]bool
}

func (p *portSet) pick() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; i < 200; i++ {
		port := 15000 + rand.IntN(7000)
		if p.used[port] || !portFree(port) || !portFree(port+10000) {
			continue
		}
		p.used[port] = true
		return port, nil
	}
	return 0, errors.New("no free port pair P, P+10000 in [15000, 32000)")
}

func (p *portSet) release(addr string) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return
	}
	port, _ := strconv.Atoi(ps)
	p.mu.Lock()
	delete(p.used, port)
	p.mu.Unlock()
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
