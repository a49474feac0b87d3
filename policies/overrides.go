package policies

// Override tells whether f is the trace of a pod annotation that asked to
// change what a policy does, for the webhook's overrides metric: kind is the
// annotation's name without its prefix (skip, shutdown-seconds,
// prestop-seconds), honoured whether it counted. Bounded: a fixed set.
func Override(f Finding) (kind string, honoured, ok bool) {
	for _, o := range []struct {
		kind              string
		honoured, refused Reason
	}{
		{"skip", ReasonOptedOut, ReasonOptOutNotAllowed},
		{"shutdown-seconds", ReasonShutdownOverride, ReasonShutdownLoweringRefused},
		{"prestop-seconds", ReasonPreStopOverride, ReasonPreStopLoweringRefused},
	} {
		if f.Reason == o.honoured || f.Reason == o.refused {
			return o.kind, f.Reason == o.honoured, true
		}
	}
	return "", false, false
}
