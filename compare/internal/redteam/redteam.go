// Package redteam reads the output of hull's red-team program
// (test/e2e/testdata/redteam: one JSON line per attack attempt, "ok": true
// when the attack succeeded) and counts what succeeded.
//
// It does not run the program. Counting is against a reference list of
// attempts (the order the program makes them, taken from a run that
// finished), so an attempt that is missing from a run is never silently
// counted as refused: when the VM went down in the middle of a run, the
// first missing attempt is the one that took it down and counts as a
// success, and the ones after it are "not reached".
package redteam

import (
	"bufio"
	"encoding/json"
	"strings"
)

// Attempt is one line of the red-team program's output.
type Attempt struct {
	Name   string `json:"attempt"`
	OK     bool   `json:"ok"`
	Errno  string `json:"errno,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// doneMarker is the program's last line when it returns normally.
const doneMarker = "done"

// Parse reads the attempts from text that may hold other lines (console
// messages), in order of first appearance. A name reported twice keeps
// its success: exec_direct is reported by the replaced program when the
// exec worked.
func Parse(out string) []Attempt {
	var list []Attempt
	index := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		// The line may follow console noise on the same line.
		i := strings.Index(line, `{"attempt":`)
		if i < 0 {
			continue
		}
		var a Attempt
		if err := json.Unmarshal([]byte(line[i:]), &a); err != nil || a.Name == "" {
			continue
		}
		if j, seen := index[a.Name]; seen {
			if a.OK && !list[j].OK {
				list[j] = a
			}
			continue
		}
		index[a.Name] = len(list)
		list = append(list, a)
	}
	return list
}

// Finished says whether a run got to the program's closing "done" line
// (in a guest where the final exec is refused).
func Finished(attempts []Attempt) bool {
	for _, a := range attempts {
		if a.Name == doneMarker {
			return true
		}
	}
	return false
}

// Names returns the attempt names of a finished run in order, without the
// closing "done" line: the reference list for Count.
func Names(attempts []Attempt) []string {
	var names []string
	for _, a := range attempts {
		if a.Name != doneMarker {
			names = append(names, a.Name)
		}
	}
	return names
}

// Tally is the count of one run against the reference list.
type Tally struct {
	// Attempts is the length of the reference list (Y in "X/Y").
	Attempts  int      `json:"attempts"`
	Succeeded []string `json:"succeeded"`
	Refused   []string `json:"refused"`
	// Missing attempts: NotReached after the VM went down, Unreported
	// when the program ended without reporting them (a crash).
	NotReached []string `json:"not_reached,omitempty"`
	Unreported []string `json:"unreported,omitempty"`
	// DownAt names the attempt during which the VM went down, "" if it
	// did not.
	DownAt string `json:"down_at,omitempty"`
	// Extra are attempts this run reported that the reference lacks;
	// they are listed but not counted.
	Extra []string `json:"extra,omitempty"`
}

// Count tallies a run against the reference names. vmDown says the VM
// stopped before the run ended (it powered off or halted).
func Count(ref []string, got []Attempt, vmDown bool) Tally {
	t := Tally{Attempts: len(ref)}
	byName := map[string]Attempt{}
	for _, a := range got {
		byName[a.Name] = a
	}
	inRef := map[string]bool{}
	// The last reference attempt the run reported: anything missing
	// before it was skipped by the program itself, not cut off.
	last := -1
	for i, n := range ref {
		inRef[n] = true
		if _, ok := byName[n]; ok {
			last = i
		}
	}
	for i, n := range ref {
		a, ok := byName[n]
		switch {
		case ok && a.OK:
			t.Succeeded = append(t.Succeeded, n)
		case ok:
			t.Refused = append(t.Refused, n)
		case vmDown && i > last && t.DownAt == "":
			// The attempt that took the VM down succeeded.
			t.DownAt = n
			t.Succeeded = append(t.Succeeded, n)
		case vmDown && i > last:
			t.NotReached = append(t.NotReached, n)
		default:
			t.Unreported = append(t.Unreported, n)
		}
	}
	for _, a := range got {
		if !inRef[a.Name] && a.Name != doneMarker {
			t.Extra = append(t.Extra, a.Name)
		}
	}
	return t
}
