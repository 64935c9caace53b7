package plan

import (
	"encoding/json"
	"fmt"
	"sort"
)

// mutator makes inputs near the seeds: a seed with values replaced at
// paths. The paths are every path of every seed and the places a policy
// reads that seeds may lack; the values are JSON's shapes, the policy's
// own string constants and every value of every seed, so that a mutation
// can move a claim from one kind of token into another.
type mutator struct {
	seeds  map[string]any
	names  []string
	paths  [][]any
	values []any // values[0] deletes the path
}

func newMutator(constants []string, seeds map[string]any) *mutator {
	m := &mutator{seeds: seeds}
	for name := range seeds {
		m.names = append(m.names, name)
	}
	sort.Strings(m.names)

	paths := map[string][]any{}
	values := map[string]any{}
	add := func(v any) {
		raw, _ := json.Marshal(v)
		values[string(raw)] = v
	}
	var walk func(path []any, v any)
	walk = func(path []any, v any) {
		paths[fmt.Sprint(path...)+fmt.Sprintf("%d", len(path))] = append([]any(nil), path...)
		add(v)
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(append(path, k), e)
			}
		case []any:
			for i, e := range v {
				walk(append(path, i), e)
			}
		}
	}
	for _, name := range m.names {
		walk(nil, seeds[name])
	}
	for _, p := range [][]any{
		{"token"}, {"token_error"}, {"parsed_body"}, {"parsed_query"}, {"truncated_body"},
		{"parsed_path", 0}, {"parsed_path", 1}, {"parsed_path", 2}, {"parsed_path", 3}, {"parsed_path", 4}, {"parsed_path", 5},
		{"token", "kind"}, {"token", "issuer"}, {"token", "subject"}, {"token", "name"},
		{"token", "claims", "scope"}, {"token", "claims", "custom:wid"}, {"token", "claims", "custom:entry"},
		{"token", "claims", "custom:channel_id"}, {"attributes", "request", "http", "method"},
		{"parsed_query", "personId"}, {"parsed_body", "toPersonId"}, {"parsed_body", "personId"},
	} {
		paths[fmt.Sprint(p...)+fmt.Sprintf("%d", len(p))] = p
	}
	for _, v := range []any{nil, true, false, 0.0, 1.0, 2.5, -1.0, 1e300, "", ".", "..", "...", "a/b", `a\b`, "x",
		[]any{}, map[string]any{}, []any{"a"}, []any{1.0}, map[string]any{"a": 1.0}, []any{nil}} {
		add(v)
	}
	for _, s := range constants {
		add(s)
	}

	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m.paths = append(m.paths, paths[k])
	}
	keys = keys[:0]
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	m.values = []any{deleted{}}
	for _, k := range keys {
		m.values = append(m.values, values[k])
	}
	return m
}

// deleted, as a value, removes the path.
type deleted struct{}

// apply is seed name with each mutation (path index, value index) done in
// turn; indices wrap around.
func (m *mutator) apply(name string, muts [][2]int) any {
	raw, _ := json.Marshal(m.seeds[name])
	var doc any
	_ = json.Unmarshal(raw, &doc)
	for _, mu := range muts {
		path := m.paths[mu[0]%len(m.paths)]
		v := copyJSON(m.values[mu[1]%len(m.values)])
		doc = set(doc, path, v)
	}
	return doc
}

func copyJSON(v any) any {
	if _, ok := v.(deleted); ok {
		return v
	}
	raw, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(raw, &out)
	return out
}

// set is doc with v at path, making what is missing on the way.
func set(doc any, path []any, v any) any {
	if len(path) == 0 {
		if _, ok := v.(deleted); ok {
			return nil
		}
		return v
	}
	switch k := path[0].(type) {
	case string:
		obj, ok := doc.(map[string]any)
		if !ok {
			obj = map[string]any{}
		}
		if _, del := v.(deleted); del && len(path) == 1 {
			delete(obj, k)
			return obj
		}
		obj[k] = set(obj[k], path[1:], v)
		return obj
	case int:
		arr, _ := doc.([]any)
		if _, del := v.(deleted); del && len(path) == 1 {
			if k < len(arr) {
				arr = append(arr[:k:k], arr[k+1:]...)
			}
			return arr
		}
		for len(arr) <= k {
			arr = append(arr, "")
		}
		arr[k] = set(arr[k], path[1:], v)
		return arr
	}
	return doc
}
