package main

// -profile: one more guestgate run per generator, not counted, with its
// execution trace and its CPU, mutex and block profiles taken from the
// admin listener's /debug/pprof/ (admin.pprof in the config).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/guestgate/guestgate/bench/load"
)

// profiles are what a profiled run saves, by file name: the execution
// trace (go tool trace; -pprof=sched, sync, syscall) and the profiles
// (go tool pprof).
var profiles = map[string]string{
	"trace.out":   "trace",
	"cpu.pb.gz":   "profile",
	"mutex.pb.gz": "mutex",
	"block.pb.gz": "block",
}

// profileRun drives gg with drive (which must take o.duration) while
// taking its profiles over the middle of the run, and saves them in
// dir as <name>-<file>.
func profileRun(ctx context.Context, o options, gg *load.Process, dir, name string, drive func() error) error {
	if gg.Admin == "" {
		return errors.New("guestgate has no admin listener to profile")
	}
	secs := max(int((o.duration-time.Second)/time.Second), 1)
	progress("profiled run (%s): guestgate, %ds of %s traced and profiled into %s", name, secs, o.duration, dir)
	var wg sync.WaitGroup
	errs := make([]error, 0, len(profiles))
	var mu sync.Mutex
	for file, route := range profiles {
		wg.Go(func() {
			// Half a second in: the run's start is not profiled.
			select {
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
				return
			}
			url := fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", gg.Admin, route, secs)
			if err := saveURL(ctx, url, filepath.Join(dir, name+"-"+file)); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	err := drive()
	wg.Wait()
	return errors.Join(append(errs, err)...)
}

// saveURL writes the body of a GET of url to path.
func saveURL(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
