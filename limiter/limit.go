package limiter

import (
	"fmt"
	"strconv"
	"time"
)

// Limit is how many requests one key may make per fixed window. The zero
// Limit is invalid: a decision with it returns an error. Limit is a value
// type; compare and copy it freely.
type Limit struct {
	// Count is the number of requests allowed in each window; at least 1.
	Count int
	// Period is the window's length; at least a millisecond, and Redis keeps it
	// at millisecond precision.
	Period time.Duration
}

// PerSecond returns a Limit of n requests per second.
func PerSecond(n int) Limit { return Limit{Count: n, Period: time.Second} }

// PerMinute returns a Limit of n requests per minute.
func PerMinute(n int) Limit { return Limit{Count: n, Period: time.Minute} }

// PerHour returns a Limit of n requests per hour.
func PerHour(n int) Limit { return Limit{Count: n, Period: time.Hour} }

// Per returns a Limit of n requests per period.
func Per(n int, period time.Duration) Limit { return Limit{Count: n, Period: period} }

// Validate reports why l cannot be used for a decision, or nil.
func (l Limit) Validate() error {
	if l.Count < 1 {
		return fmt.Errorf("limiter: limit count %d is below 1", l.Count)
	}
	if l.Period < time.Millisecond {
		return fmt.Errorf("limiter: limit period %v is under a millisecond", l.Period)
	}
	return nil
}

// IsZero reports whether l is the zero Limit.
func (l Limit) IsZero() bool { return l == Limit{} }

// String returns the limit as "10 per 10s", or "10 per second" for the
// named periods.
func (l Limit) String() string {
	var per string
	switch l.Period {
	case time.Second:
		per = "second"
	case time.Minute:
		per = "minute"
	case time.Hour:
		per = "hour"
	default:
		per = l.Period.String()
	}
	return strconv.Itoa(l.Count) + " per " + per
}

// periodMillis is the period in whole milliseconds, as the script takes it.
func (l Limit) periodMillis() int64 { return l.Period.Milliseconds() }
