package pipeline_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/internal/redistest"
	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/pipeline"
)

// tlsProxy terminates TLS with a self-signed certificate in front of the
// Redis at backend and returns a rediss:// URL to it.
func tlsProxy(t *testing.T, backend string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "floodgate-test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			front, err := ln.Accept()
			if err != nil {
				return
			}
			back, err := net.Dial("tcp", backend)
			if err != nil {
				front.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, front, back)
			mu.Unlock()
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			go pipe(front, back)
			go pipe(back, front)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "rediss://" + ln.Addr().String()
}

// TestDialTLS: rediss:// URLs, with InsecureSkipVerify for a self-signed
// certificate; without it the dial fails and the request says why.
func TestDialTLS(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	u := tlsProxy(t, srv.Addr)
	ctx := ctxT(t)

	m := pipeline.New(pipeline.DialURL(u, redis.DialTLSSkipVerify(true)))
	defer m.Close()
	lim := limiter.New(m)
	key := redistest.Key(t)
	for i, want := range []bool{true, true, false} {
		if res, err := lim.Allow(ctx, key, limiter.PerMinute(2)); err != nil || res.Allowed != want {
			t.Fatalf("step %d over TLS: %+v, %v", i, res, err)
		}
	}

	strict := pipeline.New(pipeline.DialURL(u))
	defer strict.Close()
	_, err := do(ctx, strict, "PING")
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) || !strings.HasPrefix(err.Error(), "pipeline: dial: ") {
		t.Errorf("self-signed certificate without InsecureSkipVerify: err %v", err)
	}
}

// TestDialPasswordAndDB: the URL's password and database are used; the
// commands that would change them on a shared connection are refused.
func TestDialPasswordAndDB(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	srv.Do(t, "CONFIG", "SET", "requirepass", "s3cret")
	ctx := ctxT(t)
	key := redistest.Key(t)

	m := pipeline.New(pipeline.DialURL("redis://:s3cret@" + srv.Addr + "/3"))
	defer m.Close()
	if _, err := do(ctx, m, "SET", key, "in db 3"); err != nil {
		t.Fatal(err)
	}
	for db, want := range map[string]string{"3": "in db 3", "0": ""} {
		c, err := redis.DialURLContext(ctx, "redis://:s3cret@"+srv.Addr+"/"+db)
		if err != nil {
			t.Fatal(err)
		}
		got, err := redis.String(redis.DoContext(c, ctx, "GET", key))
		c.Close()
		if want == "" && !errors.Is(err, redis.ErrNil) || want != "" && got != want {
			t.Errorf("GET in db %s: %q, %v; want %q", db, got, err, want)
		}
	}

	wrong := pipeline.New(pipeline.DialURL("redis://:wrong@" + srv.Addr))
	defer wrong.Close()
	if _, err := do(ctx, wrong, "PING"); err == nil || !strings.HasPrefix(err.Error(), "pipeline: dial: ") {
		t.Errorf("wrong password: err %v, want a dial error", err)
	}
}

// TestDialFails: a Redis that is not there fails requests at once with the
// dial's error, and every request tries a dial of its own (none is spent on
// a loop).
func TestDialFails(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	m := pipeline.New(pipeline.Dial("tcp", addr))
	defer m.Close()
	for i := 0; i < 5; i++ {
		start := time.Now()
		_, err := do(ctxT(t), m, "PING")
		var operr *net.OpError
		if !errors.As(err, &operr) || !strings.HasPrefix(err.Error(), "pipeline: dial: ") {
			t.Errorf("err %v, want the dial's error", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("a refused dial took %v", d)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if st := m.Stats(); st.Dials != 5 || st.DialErrors != 5 || st.Waiting != 0 {
		t.Errorf("stats: %+v, want 5 failed dials and nothing waiting", st)
	}
}

// TestDialTimeout: a dial that hangs (a listener that never answers AUTH)
// ends with the dial timeout, and Close does not wait for it.
func TestDialTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // read nothing, answer nothing
		}
	}()
	m := pipeline.New(pipeline.Dial("tcp", ln.Addr().String(), redis.DialPassword("pw")),
		pipeline.WithDialTimeout(100*time.Millisecond))
	start := time.Now()
	_, err = do(context.Background(), m, "PING")
	var nerr net.Error
	timedOut := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &nerr) && nerr.Timeout()
	if !timedOut || !strings.HasPrefix(err.Error(), "pipeline: dial: ") || time.Since(start) > time.Second {
		t.Errorf("hanging dial: err %v after %v, want the dial timing out", err, time.Since(start))
	}
	// A dial in progress when the Mux closes is cut short.
	m2 := pipeline.New(pipeline.Dial("tcp", ln.Addr().String(), redis.DialPassword("pw")))
	errc := make(chan error, 1)
	go func() {
		_, err := do(context.Background(), m2, "PING")
		errc <- err
	}()
	waitFor(t, time.Second, "no dial started", func() bool { return m2.Stats().Waiting == 1 })
	start = time.Now()
	m2.Close()
	if err := <-errc; !errors.Is(err, pipeline.ErrClosed) || time.Since(start) > time.Second {
		t.Errorf("Close during a dial: err %v after %v", err, time.Since(start))
	}
	m.Close()
}

// TestDialFuncMustPassOptions: a DialFunc that drops the Mux's options is an
// error, not a silently unmanaged connection.
func TestDialFuncMustPassOptions(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	m := pipeline.New(func(ctx context.Context, _ ...redis.DialOption) (redis.Conn, error) {
		return redis.DialContext(ctx, "tcp", srv.Addr)
	})
	defer m.Close()
	if _, err := do(ctxT(t), m, "PING"); err == nil || !strings.Contains(err.Error(), "did not pass") {
		t.Errorf("err %v", err)
	}
}
