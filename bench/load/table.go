package load

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Row is one figure of the report.
type Row struct {
	Group  string // section: in-process, loopback, reload, ...
	Name   string
	Value  string
	Target string // "" when the figure has none
	// Verdict is "ok", "MISSED" or "" (no target).
	Verdict string
}

// Verdict names whether a figure met its target.
func Verdict(met bool) string {
	if met {
		return "ok"
	}
	return "MISSED"
}

// Table is the report: one header line and aligned rows.
type Table struct {
	Title string
	Rows  []Row
}

// Add appends a row.
func (t *Table) Add(r Row) { t.Rows = append(t.Rows, r) }

// Write prints the table with aligned columns; a group's name is printed on
// its first row only, and a blank line separates groups.
func (t *Table) Write(w io.Writer) error {
	head := Row{Group: "section", Name: "figure", Value: "value", Target: "target", Verdict: ""}
	widths := [4]int{}
	for _, r := range append([]Row{head}, t.Rows...) {
		for i, s := range [...]string{r.Group, r.Name, r.Value, r.Target} {
			widths[i] = max(widths[i], utf8.RuneCountInString(s))
		}
	}
	var b strings.Builder
	if t.Title != "" {
		b.WriteString(t.Title + "\n")
	}
	line := func(r Row) {
		cells := [...]string{r.Group, r.Name, r.Value, r.Target, r.Verdict}
		var l strings.Builder
		for i, c := range cells {
			l.WriteString(c)
			if i < len(widths) {
				l.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
	}
	line(head)
	total := 0
	for _, wd := range widths {
		total += wd + 2
	}
	b.WriteString(strings.Repeat("-", total+6) + "\n")
	prev := ""
	for _, r := range t.Rows {
		if r.Group == prev {
			r.Group = ""
		} else if prev != "" {
			b.WriteString("\n")
		}
		if r.Group != "" {
			prev = r.Group
		}
		line(r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Micros formats a duration in microseconds with one decimal, or in
// milliseconds with two from 1 ms on.
func Micros(d time.Duration) string {
	if d >= time.Millisecond {
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

// GoBench is one line of `go test -bench -benchmem` output.
type GoBench struct {
	Pkg         string // import path
	Name        string // without the "Benchmark" prefix and the -GOMAXPROCS suffix
	NsPerOp     float64
	BytesPerOp  int64
	AllocsPerOp int64
}

var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+[\d.]+ MB/s)?(?:\s+(\d+) B/op)?(?:\s+(\d+) allocs/op)?`)

// ParseGoBench reads `go test -bench` output, of one or more packages.
func ParseGoBench(r io.Reader) ([]GoBench, error) {
	var out []GoBench
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ns, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		g := GoBench{Pkg: pkg, Name: m[1], NsPerOp: ns}
		if m[3] != "" {
			g.BytesPerOp, _ = strconv.ParseInt(m[3], 10, 64)
		}
		if m[4] != "" {
			g.AllocsPerOp, _ = strconv.ParseInt(m[4], 10, 64)
		}
		out = append(out, g)
	}
	return out, sc.Err()
}
