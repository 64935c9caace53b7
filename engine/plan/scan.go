package plan

import "github.com/open-policy-agent/opa/v1/ast"

// scan runs its block once per element of a collection: a statement
// undefined in it goes on with the next element, break 1 ends the scan.
// (Arrays and sets are walked by a loop of its own, objects through a
// scanner of the state's, so that no scan allocates a closure.)
func (s *state) scan(frame []*ast.Term, st *stmt) (int, error) {
	var (
		code = done
		err  error
	)
	switch c := termValue(frame[st.a.local]).(type) {
	case *ast.Array:
		for i := 0; i < c.Len(); i++ {
			frame[st.target], frame[st.value] = ast.InternedTerm(i), c.Elem(i)
			if code, err = s.block(frame, st.block); err != nil || code != done && code != 0 {
				break
			}
		}
	case ast.Set:
		// Slice is the set's sorted elements, the order Iter walks.
		for _, t := range c.Slice() {
			frame[st.target], frame[st.value] = t, t
			if code, err = s.block(frame, st.block); err != nil || code != done && code != 0 {
				break
			}
		}
	case ast.Object:
		if s.depth == len(s.scanners) {
			sc := &scanner{s: s}
			sc.visit = sc.each
			s.scanners = append(s.scanners, sc)
		}
		sc := s.scanners[s.depth]
		s.depth++
		sc.frame, sc.st, sc.code, sc.err = frame, st, done, nil
		c.Until(sc.visit)
		code, err = sc.code, sc.err
		sc.frame, sc.st, sc.err = nil, nil, nil
		s.depth--
	}
	switch {
	case err != nil:
		return 0, err
	case code == returned:
		return returned, nil
	case code >= 2:
		return code - 2, nil
	}
	return done, nil
}

// scanner is one active scan of an object: its block, its frame and the
// code its last element left.
type scanner struct {
	s     *state
	frame []*ast.Term
	st    *stmt
	code  int
	err   error
	// visit is each, bound once.
	visit func(k, v *ast.Term) bool
}

// each runs the block for one member and reports whether to stop.
func (sc *scanner) each(k, v *ast.Term) bool {
	sc.frame[sc.st.target], sc.frame[sc.st.value] = k, v
	sc.code, sc.err = sc.s.block(sc.frame, sc.st.block)
	return sc.err != nil || sc.code != done && sc.code != 0
}
