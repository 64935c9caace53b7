package state

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// sweepLoop drops expired records every SweepEvery. Reads never depend on
// it (they check expiry themselves); it only keeps the file from growing
// with records nobody will read again.
func (s *embedded) sweepLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if _, err := s.sweep(millis(s.opts.Now())); err != nil {
				s.fail(err)
			}
		}
	}
}

// sweep looks at up to SweepBatch records of each bucket, starting where
// the last sweep of that bucket stopped and wrapping at its end, and drops
// those expired at now: each sweep's write transaction is bounded however
// large the file grows. It returns how many records it dropped.
func (s *embedded) sweep(now int64) (int, error) {
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	var dropped int
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			b := tx.Bucket(name)
			c := b.Cursor()
			k, v := c.First()
			if from := s.sweepPos[string(name)]; from != nil {
				k, v = c.Seek(from)
			}
			var expired [][]byte
			for n := 0; k != nil && n < s.opts.SweepBatch; n++ {
				exp, err := expiryOf(v)
				if err != nil {
					return err
				}
				if exp <= now {
					expired = append(expired, append([]byte(nil), k...))
				}
				k, v = c.Next()
			}
			// Keys are valid only inside the transaction: keep a copy.
			s.sweepPos[string(name)] = append([]byte(nil), k...)
			if k == nil {
				delete(s.sweepPos, string(name))
			}
			for _, k := range expired {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			dropped += len(expired)
		}
		return nil
	})
	return dropped, err
}
