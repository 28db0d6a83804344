package limiter

import (
	"testing"
	"time"
)

func TestLimitString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		limit Limit
		want  string
	}{
		{PerSecond(10), "10 per second"},
		{PerMinute(1), "1 per minute"},
		{PerHour(100), "100 per hour"},
		{Per(10, 10*time.Second), "10 per 10s"},
		{Per(5, 1500*time.Millisecond), "5 per 1.5s"},
	}
	for _, tt := range tests {
		if got := tt.limit.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.limit, got, tt.want)
		}
	}
}

func TestLimitValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		limit Limit
		ok    bool
	}{
		{PerSecond(1), true},
		{Per(1, time.Millisecond), true},
		{Limit{}, false},
		{PerSecond(0), false},
		{PerSecond(-1), false},
		{Per(1, time.Millisecond-1), false},
		{Per(1, -time.Second), false},
	}
	for _, tt := range tests {
		if err := tt.limit.Validate(); (err == nil) != tt.ok {
			t.Errorf("%#v.Validate() = %v, want ok=%v", tt.limit, err, tt.ok)
		}
	}
	if !(Limit{}).IsZero() || PerSecond(1).IsZero() {
		t.Error("IsZero is wrong")
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	l := Per(10, 10*time.Second)
	tests := []struct {
		name    string
		reply   interface{}
		n       int
		want    Result
		wantErr bool
	}{
		{"first", []interface{}{int64(1), int64(10000)}, 1,
			Result{Allowed: true, Limit: l, Remaining: 9, ResetAfter: 10 * time.Second}, false},
		{"last", []interface{}{int64(10), int64(2500)}, 1,
			Result{Allowed: true, Limit: l, Remaining: 0, ResetAfter: 2500 * time.Millisecond}, false},
		{"over", []interface{}{int64(11), int64(2500)}, 1,
			Result{Allowed: false, Limit: l, Remaining: 0, ResetAfter: 2500 * time.Millisecond, RetryAfter: 2500 * time.Millisecond}, false},
		{"denied cost spends nothing", []interface{}{int64(13), int64(100)}, 5,
			Result{Allowed: false, Limit: l, Remaining: 2, ResetAfter: 100 * time.Millisecond, RetryAfter: 100 * time.Millisecond}, false},
		{"count above limit from a larger old limit", []interface{}{int64(40), int64(100)}, 1,
			Result{Allowed: false, Limit: l, Remaining: 0, ResetAfter: 100 * time.Millisecond, RetryAfter: 100 * time.Millisecond}, false},
		{"peek", []interface{}{int64(4), int64(100)}, 0,
			Result{Allowed: true, Limit: l, Remaining: 6, ResetAfter: 100 * time.Millisecond}, false},
		{"one value", []interface{}{int64(1)}, 1, Result{}, true},
		{"three values", []interface{}{int64(1), int64(2), int64(3)}, 1, Result{}, true},
		{"not an array", int64(1), 1, Result{}, true},
		{"not integers", []interface{}{[]byte("x"), int64(1)}, 1, Result{}, true},
		{"negative ttl", []interface{}{int64(1), int64(-1)}, 1, Result{}, true},
		{"nil", nil, 1, Result{}, true},
	}
	for _, tt := range tests {
		got, err := decode(tt.reply, l, tt.n)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
