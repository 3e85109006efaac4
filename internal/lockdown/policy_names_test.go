package lockdown

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"testing"
)

// TestPolicyNames keeps the deny lists honest: Policy skips a name missing
// from syscallNumbers (so a typo cannot crash the init), which means a
// misspelt or forgotten name would silently allow that syscall. Every
// string passed to deny(...) in policy.go, after the reason, must be in
// the table, and every Rule literal's Name must match its Nr.
func TestPolicyNames(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "policy.go", nil, 0)
	if err != nil {
		t.Fatalf("parsing policy.go: %v", err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "deny" {
			return true
		}
		if len(call.Args) < 2 {
			t.Errorf("%s: deny call with no syscall names", fset.Position(call.Pos()))
			return true
		}
		for _, a := range call.Args[1:] {
			lit, ok := a.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: deny argument is not a string literal; this test cannot check it", fset.Position(a.Pos()))
				continue
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, s)
		}
		return true
	})
	if len(names) < 40 {
		t.Fatalf("found %d names in deny(...) calls, want the full lists (parser missed them?)", len(names))
	}
	seen := map[string]bool{}
	for _, n := range names {
		if _, ok := syscallNumbers[n]; !ok {
			t.Errorf("deny list names %q, which syscallNumbers lacks: Policy would silently skip it", n)
		}
		if seen[n] {
			t.Errorf("deny lists name %q twice", n)
		}
		seen[n] = true
	}

	// Every rule Policy returns is findable by name with the same number,
	// in both memfd modes; no syscall has two rules (the first would win).
	for _, o := range []Options{{ExecFD: 65536}, {ExecFD: 65536, AllowMemfd: true}} {
		nrs := map[int]string{}
		for _, r := range Policy(o) {
			if nr, ok := syscallNumbers[r.Name]; !ok || nr != r.Nr {
				t.Errorf("rule %s has Nr %d, table says %d (present %v)", r.Name, r.Nr, nr, ok)
			}
			if other, dup := nrs[r.Nr]; dup {
				t.Errorf("syscall %d has two rules: %s and %s", r.Nr, other, r.Name)
			}
			nrs[r.Nr] = r.Name
		}
		for _, n := range names {
			if n == "memfd_create" && o.AllowMemfd {
				continue
			}
			if _, ok := nrs[syscallNumbers[n]]; !ok {
				t.Errorf("Options %+v: Policy has no rule for denied syscall %s", o, n)
			}
		}
	}
}
