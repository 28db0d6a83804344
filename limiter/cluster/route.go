package cluster

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
)

// routeKind says where a command goes.
type routeKind uint8

const (
	toSlot    routeKind = iota // the master of keys' slot; any master when there is no key
	toMasters                  // every master
	toNowhere                  // redigo's blank command: nothing to send
	refused                    // never sent: route.err says why
)

// route is where one command goes.
type route struct {
	kind routeKind
	keys []string // for toSlot; all in one slot
	slot int      // the keys' slot, or -1
	err  error    // for refused
}

// Commands whose effect is the state of the connection they run on: with
// each command on the connection of its own node, they would not hold.
var stateful = map[string]bool{
	"AUTH": true, "SELECT": true, "HELLO": true, "CLIENT": true, "RESET": true, "QUIT": true,
	"MULTI": true, "EXEC": true, "DISCARD": true, "WATCH": true, "UNWATCH": true,
	"SUBSCRIBE": true, "PSUBSCRIBE": true, "SSUBSCRIBE": true,
	"UNSUBSCRIBE": true, "PUNSUBSCRIBE": true, "SUNSUBSCRIBE": true, "MONITOR": true,
	"READONLY": true, "READWRITE": true, "ASKING": true,
}

// Commands that any master may answer.
var anyNode = map[string]bool{
	"PING": true, "ECHO": true, "TIME": true, "INFO": true, "COMMAND": true, "CLUSTER": true,
}

// routeOf finds where the command goes. It never looks at the network.
func routeOf(cmd string, args []interface{}) route {
	name := strings.ToUpper(cmd)
	switch {
	case cmd == "":
		if len(args) > 0 {
			return refuse(cmd, "a blank command takes no argument")
		}
		return route{kind: toNowhere, slot: -1}
	case stateful[name]:
		return refuse(cmd, "it changes the state of one connection, and commands on a cluster connection may each use another node's")
	case anyNode[name]:
		return route{kind: toSlot, slot: -1}
	}
	switch name {
	case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
		if len(args) < 2 {
			return refuse(cmd, "want a script and a number of keys")
		}
		n, ok := toInt(args[1])
		if !ok || n < 0 || n > len(args)-2 {
			return refuse(cmd, fmt.Sprintf("number of keys %v is not between 0 and %d", args[1], len(args)-2))
		}
		return keysRoute(cmd, args[2:2+n])
	case "SCRIPT":
		if len(args) == 0 {
			return refuse(cmd, "no subcommand")
		}
		switch strings.ToUpper(keyString(args[0])) {
		case "LOAD", "FLUSH", "EXISTS":
			return route{kind: toMasters, slot: -1}
		}
		return refuse(cmd+" "+keyString(args[0]), "only LOAD, FLUSH and EXISTS go to every master")
	case "DEL", "UNLINK", "EXISTS", "TOUCH", "MGET":
		return keysRoute(cmd, args)
	case "MSET", "MSETNX":
		if len(args)%2 != 0 {
			return refuse(cmd, "want key value pairs")
		}
		keys := make([]interface{}, 0, len(args)/2)
		for i := 0; i < len(args); i += 2 {
			keys = append(keys, args[i])
		}
		return keysRoute(cmd, keys)
	}
	if len(args) == 0 {
		return route{kind: toSlot, slot: -1}
	}
	return keysRoute(cmd, args[:1])
}

// keysRoute routes to the slot of keys, which must share it.
func keysRoute(cmd string, keys []interface{}) route {
	r := route{kind: toSlot, slot: -1, keys: make([]string, len(keys))}
	for i, k := range keys {
		r.keys[i] = keyString(k)
		slot := redisc.Slot(r.keys[i])
		if i > 0 && slot != r.slot {
			return refuse(cmd, fmt.Sprintf("keys %q (slot %d) and %q (slot %d) are in different slots; use a {hash tag}",
				r.keys[0], r.slot, r.keys[i], slot))
		}
		r.slot = slot
	}
	return r
}

func refuse(cmd, why string) route {
	return route{kind: refused, slot: -1, err: fmt.Errorf("cluster: %s refused: %s", cmd, why)}
}

// keyString is the key as redigo would write it.
func keyString(v interface{}) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case bool:
		if v {
			return "1"
		}
		return "0"
	case nil:
		return ""
	case redis.Argument:
		return keyString(v.RedisArg())
	default:
		return fmt.Sprint(v)
	}
}

func toInt(v interface{}) (int, bool) {
	switch v := v.(type) {
	case int:
		return v, true
	case int64:
		return int(v), true
	case int32:
		return int(v), true
	case string:
		n, err := strconv.Atoi(v)
		return n, err == nil
	case []byte:
		n, err := strconv.Atoi(string(v))
		return n, err == nil
	}
	return 0, false
}
