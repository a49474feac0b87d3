// Package defaults fills in the unset fields of configuration structs, whose
// zero value means "use the default".
package defaults

// number is what a count, rate, size or duration field can be.
type number interface {
	~int | ~int32 | ~int64 | ~float32 | ~float64
}

// Positive sets *p to def unless it is above zero: a zero or negative bound,
// rate or duration is not a usable setting.
func Positive[T number](p *T, def T) {
	if *p <= 0 {
		*p = def
	}
}

// Set sets *p to def when it is the zero value (an empty string, a nil
// interface or pointer).
func Set[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
