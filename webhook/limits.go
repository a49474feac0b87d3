package webhook

import "time"

// outcomeOverloaded: refused with 429 because MaxInFlight was reached.
const outcomeOverloaded = "overloaded"

// writeSlack is how long after RequestTimeout an answer may still be written.
const writeSlack = 5 * time.Second

// bodyHint caps the first allocation for a request body: a pod review is
// a few KiB to a few tens of KiB, so most bodies are read in one buffer.
const bodyHint = 64 << 10

// inFlight holds the slots admission requests take while they are read and
// reviewed (Config.MaxInFlight), and the fewer slots large or unannounced
// bodies also need (Config.MaxLargeInFlight). Acquiring never waits.
type inFlight struct {
	all, large chan struct{}
	largeBytes int64
}

func newInFlight(c Config) inFlight {
	return inFlight{all: make(chan struct{}, c.MaxInFlight), large: make(chan struct{}, c.MaxLargeInFlight), largeBytes: c.LargeBodyBytes}
}

// acquire takes the slots a request announcing contentLength bytes (-1:
// unknown) needs; ok is false, with nothing held, when one is not free.
func (f inFlight) acquire(contentLength int64) (release func(), ok bool) {
	select {
	case f.all <- struct{}{}:
	default:
		return nil, false
	}
	if contentLength >= 0 && contentLength <= f.largeBytes {
		return func() { <-f.all }, true
	}
	select {
	case f.large <- struct{}{}:
		return func() { <-f.large; <-f.all }, true
	default:
		<-f.all
		return nil, false
	}
}
