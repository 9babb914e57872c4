package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/archive"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// decodeVars fills v from env, the plugin's variables without their prefix. It follows
// envconfig's struct tags (envconfig: the variable; default: the value when it is unset) and
// decodes through envconfig.Decoder, but reads env only: envconfig.Process falls back to the bare
// tag name (BUCKET, FORCE, …) when the prefixed variable is unset, which would take a job's own
// variables for the plugin's configuration.
func decodeVars(env map[string]string, v *vars) error {
	rv := reflect.ValueOf(v).Elem()
	for i := range rv.NumField() {
		name := rv.Type().Field(i).Tag.Get("envconfig")
		s, ok := env[name]
		if !ok {
			if s, ok = rv.Type().Field(i).Tag.Lookup("default"); !ok {
				continue
			}
		}
		if err := decodeField(rv.Field(i), s); err != nil {
			return &Error{Key: keyName(name), Msg: err.Error()}
		}
	}
	return nil
}

// decodeField sets field from s. Its errors say what is allowed.
func decodeField(field reflect.Value, s string) error {
	if d, ok := field.Addr().Interface().(envconfig.Decoder); ok {
		return d.Decode(s) // an *Error without a key: its Error() is the message
	}
	switch field.Kind() {
	case reflect.String:
		field.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid value %q: want true or false", s)
		}
		field.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("invalid value %q: want a whole number", s)
		}
		field.SetInt(int64(n))
	default:
		return fmt.Errorf("cannot decode a %s (a bug: give the type a Decode method)", field.Type())
	}
	return nil
}

// The types below implement envconfig.Decoder; their errors are *Error without a key, which
// decodeVars completes.

// Decode implements envconfig.Decoder.
func (w *When) Decode(s string) error {
	switch When(s) {
	case WhenOnSuccess, WhenOnFailure, WhenAlways:
		*w = When(s)
		return nil
	}
	return &Error{Msg: fmt.Sprintf("invalid value %q: want on-success, on-failure or always", s)}
}

// Decode implements envconfig.Decoder.
func (i *Isolation) Decode(s string) error {
	switch Isolation(s) {
	case IsolationBranch, IsolationNone:
		*i = Isolation(s)
		return nil
	}
	return &Error{Msg: fmt.Sprintf("invalid value %q: want branch (pull requests and branches other than the default one save to their own namespace) or none (every build shares the caches)", s)}
}

// conditional decodes the conditional-writes key into s3's own mode.
type conditional struct{ c s3.Conditional }

func (c *conditional) Decode(s string) error {
	switch m := s3.Conditional(s); m {
	case s3.ConditionalAuto, s3.ConditionalOn, s3.ConditionalOff:
		c.c = m
		return nil
	}
	return &Error{Msg: fmt.Sprintf("invalid value %q: want auto, on or off", s)}
}

type compression struct{ c archive.Compression }

func (c *compression) Decode(s string) error {
	switch s {
	case "tar": // the official cache plugin's name for an uncompressed tarball
		c.c = archive.None
		return nil
	case "zip":
		return &Error{Msg: `invalid value "zip": zip is not supported; want zstd, tgz (gzip) or none`}
	}
	v, err := archive.ParseCompression(s)
	if err != nil {
		return &Error{Msg: fmt.Sprintf("invalid value %q: want zstd, tgz (gzip) or none", s)}
	}
	c.c = v
	return nil
}

// optionalBool tells an unset boolean from false.
type optionalBool struct{ p *bool }

func (o *optionalBool) Decode(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return &Error{Msg: fmt.Sprintf("invalid value %q: want true or false", s)}
	}
	o.p = &b
	return nil
}

// backend accepts the official cache plugin's backend key, whose only meaning here is s3.
type backend struct{}

func (backend) Decode(s string) error {
	if s != "s3" && s != "" {
		return &Error{Msg: fmt.Sprintf("invalid value %q: this plugin stores in S3 only; want s3 or no backend key", s)}
	}
	return nil
}

// Size is a number of bytes, written as a plain number or with a unit: 512MiB, 5GB, 1.5GiB.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// Decode implements envconfig.Decoder.
func (z *Size) Decode(s string) error {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f*mult > 1<<62 {
		return &Error{Msg: fmt.Sprintf("invalid size %q: want bytes or a number with a unit, such as 512MiB or 5GB", s)}
	}
	*z = Size(f * mult)
	return nil
}

// Duration is a Go duration ("90s", "2m") or a number of seconds.
type Duration time.Duration

// Decode implements envconfig.Decoder.
func (d *Duration) Decode(s string) error {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		// Out of range (NaN, ±Inf, past int64) would not convert; the range check says what is allowed.
		if !(math.Abs(n) <= math.MaxInt64/float64(time.Second)) {
			return &Error{Msg: fmt.Sprintf("invalid duration %q: want seconds or a duration such as 90s or 2m", s)}
		}
		*d = Duration(n * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &Error{Msg: fmt.Sprintf("invalid duration %q: want seconds or a duration such as 90s or 2m", s)}
	}
	*d = Duration(v)
	return nil
}
