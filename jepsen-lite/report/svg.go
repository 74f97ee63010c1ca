package report

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strings"

	"github.com/cairndb/cairn/jepsen-lite/checker"
	"github.com/cairndb/cairn/jepsen-lite/history"
)

// A tiny SVG plotter: scatter and line series over time, fault windows shaded behind them, linear
// or logarithmic y axis. No JavaScript, no external files.

type series struct {
	name   string
	color  string
	points [][2]float64 // x seconds, y value
	line   bool
	marker string // "circle", "square", "triangle" (scatter only)
}

type plot struct {
	title, ylabel string
	x0, x1        float64
	logY          bool
	windows       []history.Window
	series        []series
}

const (
	plotW, plotH         = 960, 300
	padL, padR, padT, pb = 64, 150, 28, 36
)

func (p *plot) yRange() (float64, float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range p.series {
		for _, pt := range s.points {
			y := pt[1]
			if p.logY && y <= 0 {
				continue
			}
			lo, hi = math.Min(lo, y), math.Max(hi, y)
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
	}
	if p.logY {
		lo = math.Pow(10, math.Floor(math.Log10(lo)))
		hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if hi <= lo {
			hi = lo * 10
		}
		return lo, hi
	}
	lo = math.Min(lo, 0)
	if hi <= lo {
		hi = lo + 1
	}
	return lo, hi * 1.05
}

func niceStep(span float64, n int) float64 {
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func (p *plot) svg() string {
	var b strings.Builder
	iw, ih := float64(plotW-padL-padR), float64(plotH-padT-pb)
	y0, y1 := p.yRange()
	if p.x1 <= p.x0 {
		p.x1 = p.x0 + 1
	}
	fx := func(x float64) float64 { return padL + (x-p.x0)/(p.x1-p.x0)*iw }
	fy := func(y float64) float64 {
		if p.logY {
			y = math.Max(y, y0)
			return padT + ih - (math.Log10(y)-math.Log10(y0))/(math.Log10(y1)-math.Log10(y0))*ih
		}
		return padT + ih - (y-y0)/(y1-y0)*ih
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`,
		plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="16" font-size="13" font-weight="bold">%s</text>`, padL, html.EscapeString(p.title))
	// Fault windows.
	for _, w := range p.windows {
		xa, xb := fx(float64(w.Start)/1e9), fx(float64(w.Stop)/1e9)
		if xb < padL || xa > padL+iw {
			continue
		}
		xa, xb = math.Max(xa, padL), math.Min(xb, padL+iw)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%.0f" fill="%s" fill-opacity="0.55"><title>%s %s %.1f–%.1f s</title></rect>`,
			xa, padT, math.Max(xb-xa, 1), ih, checker.FaultColor(w.Fault), html.EscapeString(w.Fault),
			html.EscapeString(strings.Join(w.Targets, ",")), float64(w.Start)/1e9, float64(w.Stop)/1e9)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="9" fill="#555">%s</text>`, xa+2, padT+10, html.EscapeString(w.Fault))
	}
	// Axes and ticks.
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, padL, padT, iw, ih)
	step := niceStep(p.x1-p.x0, 10)
	for x := math.Ceil(p.x0/step) * step; x <= p.x1; x += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#999"/><text x="%.1f" y="%.0f" text-anchor="middle">%g</text>`,
			fx(x), padT+ih, fx(x), padT+ih+4, fx(x), padT+ih+16, math.Round(x*100)/100)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">time (s)</text>`, padL+iw/2, plotH-4)
	if p.logY {
		for y := y0; y <= y1*1.0001; y *= 10 {
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`,
				padL, fy(y), padL+iw, fy(y), padL-4, fy(y)+4, y)
		}
	} else {
		ys := niceStep(y1-y0, 5)
		for y := math.Ceil(y0/ys) * ys; y <= y1; y += ys {
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`,
				padL, fy(y), padL+iw, fy(y), padL-4, fy(y)+4, math.Round(y*100)/100)
		}
	}
	fmt.Fprintf(&b, `<text x="14" y="%.0f" transform="rotate(-90 14 %.0f)" text-anchor="middle">%s</text>`,
		padT+ih/2, padT+ih/2, html.EscapeString(p.ylabel))
	// Series.
	for _, s := range p.series {
		if s.line {
			var pts []string
			for _, pt := range s.points {
				if p.logY && pt[1] <= 0 {
					continue
				}
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", fx(pt[0]), fy(pt[1])))
			}
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, s.color, strings.Join(pts, " "))
			}
			continue
		}
		fmt.Fprintf(&b, `<g fill="%s" fill-opacity="0.7">`, s.color)
		for _, pt := range s.points {
			if p.logY && pt[1] <= 0 {
				continue
			}
			x, y := fx(pt[0]), fy(pt[1])
			switch s.marker {
			case "square":
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="3" height="3"/>`, x-1.5, y-1.5)
			case "triangle":
				fmt.Fprintf(&b, `<path d="M%.1f %.1fl2 3.4h-4z"/>`, x, y-2)
			default:
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="1.6"/>`, x, y)
			}
		}
		b.WriteString(`</g>`)
	}
	// Legend.
	ly := padT + 4
	for _, s := range p.series {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="10" height="10" fill="%s"/><text x="%.0f" y="%d">%s</text>`,
			padL+iw+10, ly, s.color, padL+iw+24, ly+9, html.EscapeString(s.name))
		ly += 15
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// Jepsen's colours by completion type.
var typeColor = map[history.Type]string{history.OK: "#81BFFC", history.Info: "#FFA400", history.Fail: "#FF1E90"}

var fMarker = map[string]string{history.Append: "circle", history.Read: "square", history.FollowerRead: "triangle"}

// latencyPoint returns an operation's latency in ms and whether it has one.
func latency(o history.Operation) (float64, bool) {
	if o.Comp == nil {
		return 0, false
	}
	return float64(o.Comp.Time-o.Call) / 1e6, true
}

func clientOps(a *checker.Analysis) []history.Operation {
	var out []history.Operation
	for _, o := range a.Operations {
		if !o.Inv.Final {
			out = append(out, o)
		}
	}
	return out
}

func plotsFor(a *checker.Analysis, unseen [][2]int64) []string {
	ops := clientOps(a)
	var tmax float64
	for _, o := range a.Ops {
		tmax = math.Max(tmax, float64(o.Time)/1e9)
	}
	var out []string
	// Raw latency, by f and type.
	raw := &plot{title: "Latency of every operation (by type: ok, info, fail)", ylabel: "latency (ms, log)", x1: tmax, logY: true, windows: a.Windows}
	groups := map[string]*series{}
	var keys []string
	stride := max(1, len(ops)/15000)
	for i, o := range ops {
		if i%stride != 0 {
			continue
		}
		l, ok := latency(o)
		if !ok {
			continue
		}
		k := o.F() + " " + string(o.Type)
		s, ok := groups[k]
		if !ok {
			s = &series{name: k, color: typeColor[o.Type], marker: fMarker[o.F()]}
			groups[k] = s
			keys = append(keys, k)
		}
		s.points = append(s.points, [2]float64{float64(o.Call) / 1e9, math.Max(l, 0.01)})
	}
	sort.Strings(keys)
	for _, k := range keys {
		raw.series = append(raw.series, *groups[k])
	}
	out = append(out, raw.svg())

	// Quantiles of ok latencies per bucket.
	bucket := math.Max(1, math.Round(tmax/60))
	nb := int(tmax/bucket) + 1
	lat := make([][]float64, nb)
	for _, o := range ops {
		if o.Type != history.OK {
			continue
		}
		if l, ok := latency(o); ok {
			i := int(float64(o.Call) / 1e9 / bucket)
			if i >= 0 && i < nb {
				lat[i] = append(lat[i], l)
			}
		}
	}
	q := &plot{title: fmt.Sprintf("Latency quantiles of ok operations (%g s buckets)", bucket), ylabel: "latency (ms, log)", x1: tmax, logY: true, windows: a.Windows}
	colors := map[string]string{"p50": "#1f77b4", "p95": "#2ca02c", "p99": "#ff7f0e", "max": "#d62728"}
	for _, name := range []string{"p50", "p95", "p99", "max"} {
		s := series{name: name, color: colors[name], line: true}
		for i, v := range lat {
			if len(v) == 0 {
				continue
			}
			sort.Float64s(v)
			var y float64
			switch name {
			case "p50":
				y = v[len(v)/2]
			case "p95":
				y = v[min(len(v)-1, len(v)*95/100)]
			case "p99":
				y = v[min(len(v)-1, len(v)*99/100)]
			default:
				y = v[len(v)-1]
			}
			s.points = append(s.points, [2]float64{(float64(i) + 0.5) * bucket, math.Max(y, 0.01)})
		}
		q.series = append(q.series, s)
	}
	out = append(out, q.svg())

	// Throughput by f and type.
	r := &plot{title: fmt.Sprintf("Completions per second (%g s buckets)", bucket), ylabel: "ops/s", x1: tmax, windows: a.Windows}
	counts := map[string][]float64{}
	var rkeys []string
	for _, o := range ops {
		if o.Comp == nil {
			continue
		}
		k := o.F() + " " + string(o.Type)
		if counts[k] == nil {
			counts[k] = make([]float64, nb)
			rkeys = append(rkeys, k)
		}
		i := int(float64(o.Comp.Time) / 1e9 / bucket)
		if i >= 0 && i < nb {
			counts[k][i]++
		}
	}
	sort.Strings(rkeys)
	palette := []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}
	for i, k := range rkeys {
		s := series{name: k, color: palette[i%len(palette)], line: true}
		for j, c := range counts[k] {
			s.points = append(s.points, [2]float64{(float64(j) + 0.5) * bucket, c / bucket})
		}
		r.series = append(r.series, s)
	}
	out = append(out, r.svg())

	if len(unseen) > 0 {
		u := &plot{title: "Acknowledged events not yet read by any $all tailer (must end at 0)", ylabel: "events", x1: tmax, windows: a.Windows}
		s := series{name: "unseen", color: "#d62728", line: true}
		for _, pt := range unseen {
			s.points = append(s.points, [2]float64{float64(pt[0]) / 1e9, float64(pt[1])})
		}
		u.series = append(u.series, s)
		out = append(out, u.svg())
	}
	return out
}
