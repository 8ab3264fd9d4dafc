package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// Duration is a time.Duration that also accepts days ("90d", "1d12h").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string {
	td := time.Duration(d)
	if td > 0 && td%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(td/(24*time.Hour)), 10) + "d"
	}
	return td.String()
}

// ParseDuration parses Go's duration forms plus a leading day count.
func ParseDuration(s string) (Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var days int64
	if i := strings.IndexByte(in, 'd'); i > 0 {
		n, err := strconv.ParseInt(in[:i], 10, 64)
		if err != nil || n < 0 || n > 100000 {
			return 0, fmt.Errorf("invalid duration %q (use forms like 30s, 15m, 2h, 90d)", s)
		}
		days, in = n, in[i+1:]
	}
	var rest time.Duration
	if in != "" {
		var err error
		if rest, err = time.ParseDuration(in); err != nil {
			return 0, fmt.Errorf("invalid duration %q (use forms like 30s, 15m, 2h, 90d)", s)
		}
	}
	d := time.Duration(days)*24*time.Hour + rest
	if d < 0 {
		return 0, fmt.Errorf("invalid duration %q: negative", s)
	}
	return Duration(d), nil
}

// durationHook lets mapstructure decode strings into Duration.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(Duration(0)) {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		return ParseDuration(v)
	case int, int64, float64:
		return nil, fmt.Errorf("duration %v has no unit (use forms like 30s, 15m, 2h, 90d)", v)
	}
	return data, nil
}

var _ mapstructure.DecodeHookFuncType = durationHook
