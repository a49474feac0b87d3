package policies

// Override tells whether f is the trace of a pod annotation that asked to
// change what a policy does, for the webhook's overrides metric: kind is the
// annotation's name without its prefix (skip, shutdown-seconds,
// prestop-seconds), honoured whether it counted. Bounded: a fixed set.
func Override(f Finding) (kind string, honoured, ok bool) {
	switch f.Reason {
	case ReasonOptedOut:
		return "skip", true, true
	case ReasonOptOutNotAllowed:
		return "skip", false, true
	case ReasonShutdownOverride:
		return "shutdown-seconds", true, true
	case ReasonShutdownLoweringRefused:
		return "shutdown-seconds", false, true
	case ReasonPreStopOverride:
		return "prestop-seconds", true, true
	case ReasonPreStopLoweringRefused:
		return "prestop-seconds", false, true
	}
	return "", false, false
}
