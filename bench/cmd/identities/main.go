// Command identities checks that the service's memory stays flat however
// many distinct identities it sees: it drives a running floodgate with -n
// fresh identities (each minted by the service, then spending its whole
// window, so each one also enters the deny cache), and samples the service's
// heap and resident memory from /metrics as it goes.
//
//	floodgate with RATE_LIMIT=1 IP_RATE_LIMIT=0 on :5000, then
//	cd bench && go run ./cmd/identities -url http://127.0.0.1:5000 -n 1000000
//
// bench/http/identities.sh starts Redis and the service and runs it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:5000", "the service")
	n := flag.Int("n", 1000000, "distinct identities")
	workers := flag.Int("c", 32, "concurrent clients")
	every := flag.Int("every", 100000, "sample memory every this many identities")
	flag.Parse()
	if err := run(*base, *n, *workers, *every); err != nil {
		fmt.Fprintln(os.Stderr, "identities:", err)
		os.Exit(1)
	}
}

func run(base string, n, workers, every int) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	var next, done, bad atomic.Int64
	var sampleMu sync.Mutex
	fmt.Println("| identities | heap in use (MiB) | resident (MiB) | goroutines |")
	fmt.Println("|--:|--:|--:|--:|")
	sample := func(k int64) error {
		m, err := metrics(client, base)
		if err != nil {
			return err
		}
		fmt.Printf("| %d | %.1f | %.1f | %.0f |\n", k, m["go_memstats_heap_inuse_bytes"]/(1<<20),
			m["process_resident_memory_bytes"]/(1<<20), m["go_goroutines"])
		return nil
	}
	if err := sample(0); err != nil {
		return err
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := identity(client, base); err != nil {
					if bad.Add(1) <= 3 {
						fmt.Fprintln(os.Stderr, err)
					}
				}
				if k := done.Add(1); k%int64(every) == 0 {
					sampleMu.Lock()
					if err := sample(k); err != nil {
						fmt.Fprintln(os.Stderr, err)
					}
					sampleMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("\n%d identities in %v (%.0f/s, 3 requests each), %d failures\n", n, time.Since(start).Round(time.Second),
		float64(n)/time.Since(start).Seconds(), bad.Load())
	if bad.Load() > 0 {
		return fmt.Errorf("%d identities failed", bad.Load())
	}
	return nil
}

// identity mints a cookie, spends its window (200), then is denied (429).
func identity(c *http.Client, base string) error {
	resp, err := c.Get(base + "/healthz")
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var cookie string
	for _, k := range resp.Cookies() {
		if k.Name == "user-limiter" {
			cookie = k.Value
		}
	}
	if cookie == "" {
		return fmt.Errorf("no cookie minted")
	}
	for _, want := range []int{200, 429} {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/ping", nil)
		req.Header.Set("Cookie", "user-limiter="+cookie)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("ping: %d, want %d (run the service with RATE_LIMIT=1 IP_RATE_LIMIT=0)", resp.StatusCode, want)
		}
	}
	return nil
}

func metrics(c *http.Client, base string) (map[string]float64, error) {
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		var f float64
		if _, err := fmt.Sscan(val, &f); err == nil {
			m[name] = f
		}
	}
	return m, sc.Err()
}
