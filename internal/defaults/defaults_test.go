package defaults

import (
	"testing"
	"time"
)

func TestPositive(t *testing.T) {
	for name, tc := range map[string]struct {
		in, want time.Duration
	}{
		"zero takes the default":     {0, 5 * time.Second},
		"negative takes the default": {-time.Second, 5 * time.Second},
		"positive is kept":           {time.Millisecond, time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			got := tc.in
			Positive(&got, 5*time.Second)
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	f := -0.5
	Positive(&f, 5)
	if f != 5 {
		t.Errorf("float: got %v, want 5", f)
	}
}

func TestSet(t *testing.T) {
	for name, tc := range map[string]struct {
		in, want string
	}{
		"empty takes the default": {"", "tls.crt"},
		"set is kept":             {"cert.pem", "cert.pem"},
	} {
		t.Run(name, func(t *testing.T) {
			got := tc.in
			Set(&got, "tls.crt")
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
