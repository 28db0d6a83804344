package pipeline_test

import (
	"context"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/pipeline"
)

func Example() {
	mr, _ := miniredis.Run() // stands in for a real Redis here
	defer mr.Close()

	// In a service: pipeline.DialURL(os.Getenv("REDIS_URL"), redis.DialTLSSkipVerify(true)).
	mux := pipeline.New(pipeline.Dial("tcp", mr.Addr()),
		pipeline.WithHangTimeout(100*time.Millisecond)) // the decision budget
	defer mux.Close()

	lim := limiter.New(mux, limiter.WithTimeout(100*time.Millisecond))
	for i := 1; i <= 3; i++ {
		res, err := lim.Allow(context.Background(), "user-42", limiter.Per(2, 10*time.Second))
		if err != nil {
			fmt.Println("limiter unavailable:", err)
			continue
		}
		fmt.Printf("request %d: allowed=%v remaining=%d\n", i, res.Allowed, res.Remaining)
	}
	// Output:
	// request 1: allowed=true remaining=1
	// request 2: allowed=true remaining=0
	// request 3: allowed=false remaining=0
}

func ExampleMux_GetContext() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	mux := pipeline.New(pipeline.Dial("tcp", mr.Addr()))
	defer mux.Close()

	ctx := context.Background()
	conn, err := mux.GetContext(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	// Commands sent together are written together, and their replies come
	// back in order; an error reply is that one command's error.
	conn.Send("SET", "greeting", "hello")
	conn.Send("INCR", "greeting")
	conn.Send("GET", "greeting")
	conn.Flush()
	for i := 0; i < 3; i++ {
		reply, err := redis.String(redis.ReceiveContext(conn, ctx))
		fmt.Printf("%q %v\n", reply, err)
	}

	// Commands that would change the shared connection are refused.
	_, err = redis.DoContext(conn, ctx, "SELECT", 1)
	fmt.Println(err)
	// Output:
	// "OK" <nil>
	// "" ERR value is not an integer or out of range
	// "hello" <nil>
	// pipeline: SELECT: command not allowed on a shared pipelined connection
}
