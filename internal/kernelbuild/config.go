package kernelbuild

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Option is one line of a config fragment: CONFIG_NAME=value, or
// "# CONFIG_NAME is not set", which is Value "n".
type Option struct {
	Name  string // with the CONFIG_ prefix
	Value string // y, m, n, a number, or a quoted string as written
	Line  int    // 1-based line in the fragment, for messages
}

func (o Option) String() string {
	if o.Value == "n" {
		return "# " + o.Name + " is not set"
	}
	return o.Name + "=" + o.Value
}

var (
	setLine     = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.*)$`)
	unsetLine   = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
	numberValue = regexp.MustCompile(`^(-?[0-9]+|0x[0-9a-fA-F]+)$`)
)

// ParseFragment reads a config fragment: option lines as in a .config,
// comments and blank lines. A line that looks like neither, an empty
// value, or an option given twice is an error naming the line: a fragment
// that says two things about one option says nothing reliable.
func ParseFragment(data []byte) ([]Option, error) {
	var opts []Option
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		var o Option
		if m := setLine.FindStringSubmatch(line); m != nil {
			o = Option{Name: m[1], Value: m[2], Line: n}
			if o.Value == "" {
				return nil, fmt.Errorf("fragment line %d: %s has no value", n, o.Name)
			}
			if err := checkValue(o.Value); err != nil {
				return nil, fmt.Errorf("fragment line %d: %s: %w", n, o.Name, err)
			}
		} else if m := unsetLine.FindStringSubmatch(line); m != nil {
			o = Option{Name: m[1], Value: "n", Line: n}
		} else if line == "" || strings.HasPrefix(line, "#") {
			// A comment that starts with an option name is an option line
			// gone wrong ("#CONFIG_X is not set", "# CONFIG_X=n") or one
			// commented out: reading it as a comment would silently leave
			// the option as tinyconfig has it, so it is refused.
			if strings.HasPrefix(strings.TrimLeft(line, "# \t"), "CONFIG_") {
				return nil, fmt.Errorf("fragment line %d: %q: write an option off as \"# CONFIG_X is not set\" (one space after #), and delete lines you do not want rather than commenting them out", n, line)
			}
			continue
		} else {
			return nil, fmt.Errorf("fragment line %d: %q is not CONFIG_X=value, \"# CONFIG_X is not set\" or a comment", n, line)
		}
		if prev, dup := seen[o.Name]; dup {
			return nil, fmt.Errorf("fragment line %d: %s is already set on line %d", n, o.Name, prev)
		}
		seen[o.Name] = n
		opts = append(opts, o)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading fragment: %w", err)
	}
	if len(opts) == 0 {
		return nil, fmt.Errorf("fragment sets no options")
	}
	return opts, nil
}

// checkValue accepts what Kconfig writes: a tristate, a decimal or hex
// number, or a double-quoted string.
func checkValue(v string) error {
	switch {
	case v == "y" || v == "m" || v == "n":
		return nil
	case strings.HasPrefix(v, `"`):
		if len(v) < 2 || !strings.HasSuffix(v, `"`) {
			return fmt.Errorf("unterminated string %s", v)
		}
		return nil
	case numberValue.MatchString(v):
		return nil
	}
	return fmt.Errorf("value %q is not y, m, n, a number or a quoted string", v)
}

// ParseConfig reads a .config into option → value; options written as
// "is not set" map to "n". Options absent from the file are not in the
// map (Kconfig leaves out what it cannot offer).
func ParseConfig(data []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := setLine.FindStringSubmatch(line); m != nil {
			out[m[1]] = m[2]
		} else if m := unsetLine.FindStringSubmatch(line); m != nil {
			out[m[1]] = "n"
		}
	}
	return out
}

// Merge writes opts over a .config: a line for an option the fragment
// names is replaced in place, and options the base does not mention are
// appended, in fragment order. Kconfig (olddefconfig) then resolves
// dependencies; Verify says whether the result is what was asked.
func Merge(base []byte, opts []Option) []byte {
	want := map[string]Option{}
	for _, o := range opts {
		want[o.Name] = o
	}
	done := map[string]bool{}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(base))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name := ""
		if m := setLine.FindStringSubmatch(line); m != nil {
			name = m[1]
		} else if m := unsetLine.FindStringSubmatch(line); m != nil {
			name = m[1]
		}
		if o, ok := want[name]; ok {
			if !done[name] {
				out.WriteString(o.String() + "\n")
				done[name] = true
			}
			continue
		}
		out.WriteString(line + "\n")
	}
	var extra []string
	for _, o := range opts {
		if !done[o.Name] {
			extra = append(extra, o.String())
		}
	}
	if len(extra) > 0 {
		out.WriteString("# hull.config\n" + strings.Join(extra, "\n") + "\n")
	}
	return out.Bytes()
}

// Mismatch is one fragment option Kconfig did not keep.
type Mismatch struct {
	Option Option
	Got    string // the value in the final .config; "" when Kconfig dropped the option entirely
}

func (m Mismatch) String() string {
	got := m.Got
	switch got {
	case "":
		got = "absent (unknown option, or its dependencies are off)"
	case "n":
		got = "not set"
	}
	return fmt.Sprintf("%s (line %d): want %s, got %s", m.Option.Name, m.Option.Line, m.Option.Value, got)
}

// VerifyError lists every option of the fragment that did not end up as
// written, typically because a dependency is off, the option was renamed,
// or another option selects it.
type VerifyError struct {
	Mismatches []Mismatch
}

func (e *VerifyError) Error() string {
	parts := make([]string, len(e.Mismatches))
	for i, m := range e.Mismatches {
		parts[i] = m.String()
	}
	return fmt.Sprintf("%d option(s) of the config fragment did not stick (fix their dependencies in the fragment): %s",
		len(parts), strings.Join(parts, "; "))
}

// Verify checks that every option of the fragment has its asked-for value
// in the final .config. "n" is satisfied by "is not set" and by absence.
func Verify(config []byte, opts []Option) error {
	got := ParseConfig(config)
	var bad []Mismatch
	for _, o := range opts {
		v, ok := got[o.Name]
		if o.Value == "n" && (!ok || v == "n") {
			continue
		}
		if ok && v == o.Value {
			continue
		}
		bad = append(bad, Mismatch{Option: o, Got: v})
	}
	if len(bad) == 0 {
		return nil
	}
	slices.SortStableFunc(bad, func(a, b Mismatch) int { return a.Option.Line - b.Option.Line })
	return &VerifyError{Mismatches: bad}
}
