package policies

import "testing"

func TestOverride(t *testing.T) {
	type want struct {
		kind     string
		honoured bool
		ok       bool
	}
	for desc, tc := range map[string]struct {
		reason Reason
		want   want
	}{
		"opt-out honoured":          {ReasonOptedOut, want{"skip", true, true}},
		"opt-out refused":           {ReasonOptOutNotAllowed, want{"skip", false, true}},
		"shutdown override":         {ReasonShutdownOverride, want{"shutdown-seconds", true, true}},
		"shutdown lowering refused": {ReasonShutdownLoweringRefused, want{"shutdown-seconds", false, true}},
		"preStop override":          {ReasonPreStopOverride, want{"prestop-seconds", true, true}},
		"preStop lowering refused":  {ReasonPreStopLoweringRefused, want{"prestop-seconds", false, true}},
		"not an override":           {ReasonBudgetExceeded, want{}},
	} {
		t.Run(desc, func(t *testing.T) {
			kind, honoured, ok := Override(Finding{Reason: tc.reason})
			if got := (want{kind, honoured, ok}); got != tc.want {
				t.Errorf("Override(%s) = %+v, want %+v", tc.reason, got, tc.want)
			}
		})
	}
}
