package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the embedded store's file under Options.Dir.
const FileName = "state.db"

// batchDelay is how long a write waits for others to share its file sync
// (bbolt's default is 10ms: a lone claim would wait that long).
const batchDelay = 2 * time.Millisecond

// Buckets of the embedded store. Every value starts with its expiry, 8
// bytes of Unix milliseconds, big-endian, so one sweep serves them all.
var (
	bucketChannels    = []byte("channels")    // channel -> expiry, owner key
	bucketOwners      = []byte("owners")      // owner key + joinKey(channel) -> expiry
	bucketReplay      = []byte("replay")      // replay key -> expiry
	bucketRevocations = []byte("revocations") // revocation key -> until
	allBuckets        = [][]byte{bucketChannels, bucketOwners, bucketReplay, bucketRevocations}
)

// embedded keeps the store in a bbolt file: one node, records kept across
// restarts, every write synced before it is answered.
type embedded struct {
	opts    Options
	db      *bolt.DB
	limiter *memLimiter
	revoked revocationSet
	health  healthTracker
	closed  atomic.Bool

	sweepMu  sync.Mutex
	sweepPos map[string][]byte // bucket -> key the next sweep starts at

	stop chan struct{}
	done chan struct{}
}

func openEmbedded(opts Options, sweep bool) (*embedded, error) {
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("state.dir: %w", err)
	}
	path := filepath.Join(opts.Dir, FileName)
	// Timeout: a second process on the same file waits at most this long
	// for bbolt's lock, then refuses to start rather than hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("state.dir: %s is in use by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("state.dir: opening %s: %w", path, err)
	}
	db.MaxBatchDelay = batchDelay
	lim, err := newMemLimiter(opts.MaxRateKeys)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &embedded{
		opts: opts, db: db, limiter: lim,
		health:   healthTracker{backend: BackendEmbedded},
		sweepPos: make(map[string][]byte),
		stop:     make(chan struct{}), done: make(chan struct{}),
	}
	revoked := make(map[revKey]int64)
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketRevocations).ForEach(func(k, v []byte) error {
			rk, err := decodeRevKey(string(k))
			if err != nil {
				return err
			}
			until, err := expiryOf(v)
			if err != nil {
				return err
			}
			revoked[rk] = until
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("state.dir: reading %s: %w", path, err)
	}
	now := millis(opts.Now())
	s.revoked.merge(revoked, now)
	s.revoked.syncedAt.Store(now)
	s.health.ok()
	if sweep {
		go s.sweepLoop()
	} else {
		close(s.done)
	}
	return s, nil
}

func (s *embedded) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	<-s.done
	return s.db.Close()
}

func (s *embedded) Health() Health {
	h := s.health.snapshot()
	h.RevocationsAt = time.UnixMilli(s.revoked.syncedAt.Load())
	return h
}

func (s *embedded) fail(err error) error {
	s.health.fail(err, s.opts.Now())
	return unavailable(BackendEmbedded, err)
}

// begin refuses an operation on a closed store or a done context.
func (s *embedded) begin(ctx context.Context) error {
	if s.closed.Load() {
		return s.fail(berrors.ErrDatabaseNotOpen)
	}
	if err := ctx.Err(); err != nil {
		return s.fail(err)
	}
	return nil
}

// view runs fn in a read transaction: no I/O beyond the memory map, so it
// runs inline after the context is checked.
func (s *embedded) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	if err := s.db.View(fn); err != nil {
		return s.fail(err)
	}
	s.health.ok()
	return nil
}

// update runs fn in a write transaction, waiting at most Options.Timeout
// for it (the writer lock and the file sync). A transaction the caller
// gave up on still completes; its caller has already denied.
//
// Writes go through bbolt's Batch: writers arriving within batchDelay of
// each other share one transaction and one file sync, so a burst of claims
// costs a few syncs, not one each in a queue that outlasts the timeout.
// Batch may run fn twice (again alone, when another fn of its batch
// failed): every fn here computes its answer from the records it reads, so
// a second run answers as the first would have.
func (s *embedded) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.db.Batch(fn) }()
	select {
	case err := <-done:
		if err != nil {
			return s.fail(err)
		}
		s.health.ok()
		return nil
	case <-ctx.Done():
		return s.fail(fmt.Errorf("write not done within %v: %w", s.opts.Timeout, ctx.Err()))
	}
}

func expiryOf(v []byte) (int64, error) {
	if len(v) < 8 {
		return 0, fmt.Errorf("record of %d bytes has no expiry", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

func withExpiry(exp int64, rest string) []byte {
	v := make([]byte, 8, 8+len(rest))
	binary.BigEndian.PutUint64(v, uint64(exp))
	return append(v, rest...)
}

// ownershipOf decodes a channel record: its expiry and its owner's key.
func ownershipOf(v []byte) (int64, []byte, error) {
	exp, err := expiryOf(v)
	return exp, v[min(8, len(v)):], err
}

func (s *embedded) Claim(ctx context.Context, channel string, o Owner, idle time.Duration, maxPerOwner int) (ClaimOutcome, error) {
	if err := checkClaim(channel, o, idle, maxPerOwner); err != nil {
		return 0, err
	}
	now := millis(s.opts.Now())
	exp := now + idle.Milliseconds()
	owner := o.key()
	var out ClaimOutcome
	err := s.update(ctx, func(tx *bolt.Tx) error {
		channels, owners := tx.Bucket(bucketChannels), tx.Bucket(bucketOwners)
		if v := channels.Get([]byte(channel)); v != nil {
			cur, curOwner, err := ownershipOf(v)
			if err != nil {
				return err
			}
			if now < cur {
				if string(curOwner) != owner {
					out = OwnedByAnother
					return nil
				}
				out = AlreadyYours
				return putOwnership(channels, owners, channel, owner, exp)
			}
		}
		n, err := liveOwnerships(owners, owner, now)
		if err != nil {
			return err
		}
		if n >= maxPerOwner {
			out = OverLimit
			return nil
		}
		out = Claimed
		return putOwnership(channels, owners, channel, owner, exp)
	})
	if err != nil {
		return 0, err
	}
	return out, nil
}

func putOwnership(channels, owners *bolt.Bucket, channel, owner string, exp int64) error {
	if err := channels.Put([]byte(channel), withExpiry(exp, owner)); err != nil {
		return err
	}
	return owners.Put([]byte(owner+joinKey(channel)), withExpiry(exp, ""))
}

// liveOwnerships counts owner's unexpired ownerships and drops its expired
// index entries on the way. An owner key is a prefix of its own index keys
// and of no other owner's (joinKey is prefix-free).
func liveOwnerships(owners *bolt.Bucket, owner string, now int64) (int, error) {
	prefix := []byte(owner)
	var n int
	var expired [][]byte
	c := owners.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		exp, err := expiryOf(v)
		if err != nil {
			return 0, err
		}
		if now < exp {
			n++
		} else {
			expired = append(expired, append([]byte(nil), k...))
		}
	}
	for _, k := range expired {
		if err := owners.Delete(k); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Require answers from a read transaction and rewrites the idle expiry at
// most once per idle/16, so a Check costs a write (a file sync) only that
// often per channel: an ownership ends between 15/16 of idle and idle after
// its last use.
func (s *embedded) Require(ctx context.Context, channel string, o Owner, idle time.Duration) (RequireOutcome, error) {
	if err := checkOwnership(channel, o, idle); err != nil {
		return 0, err
	}
	now := millis(s.opts.Now())
	exp := now + idle.Milliseconds()
	owner := o.key()
	grain := max(idle.Milliseconds()/16, 1)
	var out RequireOutcome
	var stale bool
	read := func(channels *bolt.Bucket) error {
		v := channels.Get([]byte(channel))
		if v == nil {
			out = NotOwned
			return nil
		}
		cur, curOwner, err := ownershipOf(v)
		switch {
		case err != nil:
			return err
		case cur <= now:
			out = NotOwned
		case string(curOwner) != owner:
			out = OwnedByOther
		default:
			out = Yours
			stale = exp-cur >= grain
		}
		return nil
	}
	if err := s.view(ctx, func(tx *bolt.Tx) error { return read(tx.Bucket(bucketChannels)) }); err != nil {
		return 0, err
	}
	if out != Yours || !stale {
		return out, nil
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		channels := tx.Bucket(bucketChannels)
		// Read again: the record may have changed since the view.
		if err := read(channels); err != nil || out != Yours {
			return err
		}
		return putOwnership(channels, tx.Bucket(bucketOwners), channel, owner, exp)
	})
	if err != nil {
		return 0, err
	}
	return out, nil
}

func (s *embedded) Remember(ctx context.Context, key string, until time.Time) (bool, error) {
	now := s.opts.Now()
	if err := checkRemember(key, until, now); err != nil {
		return false, err
	}
	var fresh bool
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReplay)
		if v := b.Get([]byte(key)); v != nil {
			exp, err := expiryOf(v)
			if err != nil {
				return err
			}
			if millis(now) < exp {
				fresh = false
				return nil
			}
		}
		fresh = true
		return b.Put([]byte(key), withExpiry(millis(until), ""))
	})
	if err != nil {
		return false, err
	}
	return fresh, nil
}

func (s *embedded) Allow(ctx context.Context, key string, l Limit) (bool, time.Duration, error) {
	if err := checkLimit(key, l); err != nil {
		return false, 0, err
	}
	if err := s.begin(ctx); err != nil {
		return false, 0, err
	}
	ok, retry := s.limiter.allow(key, l, s.opts.Now())
	return ok, retry, nil
}

func (s *embedded) Revoke(ctx context.Context, r Revocation) error {
	now := s.opts.Now()
	if err := checkRevocation(r, now); err != nil {
		return err
	}
	k := revKey{r.Kind, r.Issuer, r.Value}
	until := millis(r.Until)
	// In force on this node before the write: a write that fails or
	// outlasts the timeout (and may still land) never leaves the file
	// denying what the snapshot allows.
	s.revoked.merge(map[revKey]int64{k: until}, millis(now))
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRevocations)
		if v := b.Get([]byte(k.encode())); v != nil {
			cur, err := expiryOf(v)
			if err != nil {
				return err
			}
			until = max(until, cur)
		}
		return b.Put([]byte(k.encode()), withExpiry(until, ""))
	})
}

func (s *embedded) Revoked(ctx context.Context, t TokenRef) (bool, error) {
	if err := s.begin(ctx); err != nil {
		return false, err
	}
	return s.revoked.covers(t, millis(s.opts.Now())), nil
}
