package main

// The load test's mix of requests.

import (
	"errors"
	"fmt"

	"github.com/guestgate/guestgate/bench/workload"
)

// weights is the load test's mix: mostly anonymous chat commands, then
// guest access, SAT and the login exchange, and one request in ten denied.
var weights = map[string]int{
	"xbs_kite_command": 30, "xbs_kite_get_token": 10, "xbs_link_command": 10,
	"guest_login": 4, "access_messages": 14, "access_post_message": 10, "sat_launchpad": 12,
	"deny_xbs_command": 2, "deny_xbs_other_channel": 2, "deny_guest_to_guest": 2,
	"deny_sat_other_launchpad": 1, "deny_missing_token": 2, "deny_bad_signature": 1,
}

// schedule lists case indexes, each as often as its weight.
func schedule(cases []workload.Case) ([]int, error) {
	var s []int
	seen := 0
	for i, c := range cases {
		w, ok := weights[c.Name]
		if !ok {
			return nil, fmt.Errorf("case %s has no weight in the mix", c.Name)
		}
		seen++
		for range w {
			s = append(s, i)
		}
	}
	if seen != len(weights) {
		return nil, errors.New("the mix names a case the workload lacks")
	}
	return s, nil
}
