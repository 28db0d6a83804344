package main

import (
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

// row is one line of the table: a library at one goroutine count (or a
// redis-benchmark setting), with one result per round.
type row struct {
	name        string
	g           int
	external    bool // redis-benchmark: g is its connection count
	unavailable string
	results     []*cellResult
}

// summary is a row's rounds reduced to one line: the median of each
// measure, errors and denials added up.
type summary struct {
	ok                bool
	rate              float64
	p50, p99          time.Duration
	errors, denied    uint64
	firstErr, failure string
}

func (r *row) summary() summary {
	var s summary
	var rates []float64
	var p50s, p99s []time.Duration
	for _, res := range r.results {
		if res.setupErr != nil {
			if s.failure == "" {
				s.failure = res.setupErr.Error()
			}
			continue
		}
		rates = append(rates, res.rate())
		p50s = append(p50s, res.p50())
		p99s = append(p99s, res.p99())
		s.errors += res.errors
		s.denied += res.denied
		if s.firstErr == "" {
			s.firstErr = res.firstErr
		}
	}
	if len(rates) == 0 {
		return s
	}
	s.ok = true
	s.rate = median(rates)
	s.p50 = time.Duration(median(durs(p50s)))
	s.p99 = time.Duration(median(durs(p99s)))
	return s
}

func durs(ds []time.Duration) []float64 {
	f := make([]float64, len(ds))
	for i, d := range ds {
		f[i] = float64(d)
	}
	return f
}

// median of vs: the middle value, or the mean of the two middle ones.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// report renders the table and its notes as markdown.
type report struct {
	header, settings string
	rows             []*row
	refName          string
	refExplicit      bool
	libs             []library
}

// fallbackRef stands in for rueidislimiter in the second ratio column when
// that library cannot run: the other auto-pipelined rueidis contender.
const fallbackRef = "rueidis + fixed_window.lua"

func (rep report) String() string {
	var b strings.Builder
	sums := make(map[*row]summary, len(rep.rows))
	for _, r := range rep.rows {
		sums[r] = r.summary()
	}

	// The ratios' references: redis-benchmark -P 16, and the reference
	// library at each goroutine count.
	var rbRef float64
	refRate := map[int]float64{}
	refName, refNote := rep.refName, ""
	refMeasured := func(name string) bool {
		for _, r := range rep.rows {
			if r.name == name && !r.external && sums[r].ok {
				return true
			}
		}
		return false
	}
	if !refMeasured(refName) && !rep.refExplicit && refMeasured(fallbackRef) {
		refNote = fmt.Sprintf("The column \"vs %s\" stands in for \"vs %s\", which did not run here (see its row).", fallbackRef, refName)
		refName = fallbackRef
	}
	for _, r := range rep.rows {
		s := sums[r]
		if !s.ok {
			continue
		}
		if r.name == rbRefName {
			rbRef = s.rate
		}
		if r.name == refName && !r.external {
			refRate[r.g] = s.rate
		}
	}

	fmt.Fprintf(&b, "%s\n\n%s\n\n", rep.header, rep.settings)
	fmt.Fprintf(&b, "| library | goroutines | decisions/s | p50 µs | p99 µs | errors | denied | vs redis-benchmark -P 16 | vs %s |\n", refName)
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rep.rows {
		s := sums[r]
		g := strconv.Itoa(r.g)
		if r.external {
			g = strconv.Itoa(r.g) + " conns"
		}
		switch {
		case r.unavailable != "":
			fmt.Fprintf(&b, "| %s | — | unavailable: %s | | | | | | |\n", r.name, mdEscape(r.unavailable))
		case !s.ok:
			reason := s.failure
			if reason == "" {
				reason = "not run (interrupted)"
			}
			fmt.Fprintf(&b, "| %s | %s | failed: %s | | | | | | |\n", r.name, g, mdEscape(reason))
		default:
			vsRef := "—"
			if !r.external {
				vsRef = ratio(s.rate, refRate[r.g])
			}
			denied := strconv.FormatUint(s.denied, 10)
			if r.external {
				denied = "—" // redis-benchmark does not read the replies' meaning
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | %s | %s | %s |\n",
				r.name, g, thousands(s.rate), micros(s.p50), micros(s.p99),
				s.errors, denied, ratio(s.rate, rbRef), vsRef)
		}
	}

	// Notes: how each library was driven, and what went wrong.
	b.WriteString("\n")
	if refNote != "" {
		fmt.Fprintf(&b, "- %s\n", refNote)
	}
	seen := map[string]bool{}
	for _, r := range rep.rows {
		if seen[r.name] || r.unavailable != "" {
			continue
		}
		seen[r.name] = true
		for _, l := range rep.libs {
			if l.name == r.name && l.note != "" {
				fmt.Fprintf(&b, "- %s\n", l.note)
			}
		}
	}
	fmt.Fprintf(&b, "- redis-benchmark: EVALSHA of fixed_window.lua (SCRIPT LOAD first) on __rand_int__ keys (-r = -keys), %d connections, -n sized from a calibration run to last about -duration; decisions/s is its requests/s, p50/p99 its own per-request latency (with -P 16 a request waits for its batch of 16).\n", rbClients)
	for _, r := range rep.rows {
		if s := sums[r]; s.firstErr != "" {
			fmt.Fprintf(&b, "- %s, g=%d, first error: %s\n", r.name, r.g, mdEscape(s.firstErr))
		}
	}
	return b.String()
}

// progressLine is one cell's result, for stderr while the run goes on.
func progressLine(r *row, res *cellResult) string {
	if res.setupErr != nil {
		return fmt.Sprintf("%s g=%d: failed: %v", r.name, r.g, res.setupErr)
	}
	line := fmt.Sprintf("%s g=%d: %s/s p50 %sµs p99 %sµs errors %d denied %d",
		r.name, r.g, thousands(res.rate()), micros(res.p50()), micros(res.p99()), res.errors, res.denied)
	if res.firstErr != "" {
		line += " (first error: " + res.firstErr + ")"
	}
	return line
}

func ratio(v, ref float64) string {
	if ref <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", v/ref)
}

// micros formats d in microseconds with about three significant digits.
func micros(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case us < 10:
		return strconv.FormatFloat(us, 'f', 2, 64)
	case us < 100:
		return strconv.FormatFloat(us, 'f', 1, 64)
	default:
		return thousands(us)
	}
}

// thousands formats v rounded to an integer, with commas between thousands.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.ReplaceAll(s, "\n", " ")
}

// moduleVersions names the version of each contender's module in this
// build.
func moduleVersions() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	want := []string{
		"github.com/gomodule/redigo",
		"github.com/redis/go-redis/v9",
		"github.com/go-redis/redis_rate/v10",
		"github.com/ulule/limiter/v3",
		"github.com/redis/rueidis",
		"github.com/redis/rueidis/rueidislimiter",
		"github.com/go-chi/httprate-redis",
	}
	var parts []string
	for _, path := range want {
		for _, m := range info.Deps {
			if m.Path == path {
				parts = append(parts, strings.TrimPrefix(path, "github.com/")+" "+m.Version)
			}
		}
	}
	return strings.Join(parts, ", ")
}
