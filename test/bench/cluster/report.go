package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// stats of one arm over all its rounds.
type stats struct {
	rate, minRate, maxRate float64 // creates per second: median, min, max over rounds
	p50, p99               time.Duration
}

func summarize(ss []sample, n int) stats {
	var rates []float64
	var lat []time.Duration
	for _, s := range ss {
		rates = append(rates, float64(n)/s.wall.Seconds())
		lat = append(lat, s.latencies...)
	}
	slices.Sort(rates)
	slices.Sort(lat)
	st := stats{rate: median(rates), minRate: rates[0], maxRate: rates[len(rates)-1]}
	st.p50 = lat[(len(lat)-1)*50/100]
	st.p99 = lat[(len(lat)-1)*99/100]
	return st
}

func median(xs []float64) float64 {
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// print writes the tables: rates as ratios to no admission and to the
// floor (higher is faster), latencies as ratios (lower is faster).
func (r *result) print(w io.Writer, o options) {
	if len(r.arms) == 0 {
		return
	}
	st := map[string]stats{}
	for _, a := range r.arms {
		st[a] = summarize(r.samples[a], o.n)
	}
	none, floor := st["none"], st["floor"]
	fmt.Fprintf(w, "\n%d rounds x %d pods (2 containers) per arm, %d clients; ratios are to the same run's arms\n\n", len(r.samples["none"]), o.n, o.c)
	fmt.Fprintln(w, "| arm | creates/s (median, range) | rate vs none | rate vs floor | p50 | p99 | p50 vs none | p99 vs none | p50 vs floor | p99 vs floor |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, a := range r.arms {
		s := st[a]
		fmt.Fprintf(w, "| %s | %.0f (%.0f–%.0f) | %.2f× | %.2f× | %s | %s | %.2f× | %.2f× | %.2f× | %.2f× |\n",
			a, s.rate, s.minRate, s.maxRate, s.rate/none.rate, s.rate/floor.rate, ms(s.p50), ms(s.p99),
			ratio(s.p50, none.p50), ratio(s.p99, none.p99), ratio(s.p50, floor.p50), ratio(s.p99, floor.p99))
	}
	for _, m := range r.unavailable {
		fmt.Fprintf(w, "| selected/%s, unselected/%s | not available in this build (serve refused --admission-mode=%s) | | | | | | | | |\n", m, m, m)
	}
	if r.held > 0 {
		mib := func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
		limit := "no GOMEMLIMIT"
		if o.goMemLimit != "" {
			limit = "GOMEMLIMIT=" + o.goMemLimit
		}
		fmt.Fprintf(w, "\n%d pods held by the termination-record finalizer (created in %s), gracekeeper with %s\n\n", r.held, r.heldWall.Round(100*time.Millisecond), limit)
		fmt.Fprintln(w, "| gracekeeper | before | with the held pods |")
		fmt.Fprintln(w, "| --- | --- | --- |")
		fmt.Fprintf(w, "| RSS (VmRSS) | %s | %s |\n", mib(r.before.rss), mib(r.after.rss))
		fmt.Fprintf(w, "| of which anonymous (RssAnon: heap, stacks) | %s | %s |\n", mib(r.before.anon), mib(r.after.anon))
		fmt.Fprintf(w, "| of which file-backed (RssFile: the binary's code and read-only data) | %s | %s |\n", mib(r.before.file), mib(r.after.file))
		fmt.Fprintf(w, "| peak RSS (VmHWM) | %s | %s |\n", mib(r.before.peak), mib(r.after.peak))
		fmt.Fprintf(w, "| Go heap in use (go_memstats_heap_inuse_bytes) | %s | %s |\n", mib(r.before.heap), mib(r.after.heap))
	}
	fmt.Fprintln(w, strings.Repeat("-", 3))
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
