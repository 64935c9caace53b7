package state

import (
	lru "github.com/hashicorp/golang-lru/v2"
)

// ownershipCache is the Redis backend's bounded memory of the ownerships
// Redis confirmed recently, answering for them while Redis does not
// answer. It holds only positive answers: a failure denies anyway, so
// only "yours" needs remembering.
//
// Staleness bound: an answer is served only while it is younger than
// Options.StaleBound and its ownership has not reached its idle expiry.
// Within that bound nothing can make it wrong but the ownership's own
// expiry, which it knows: an unexpired ownership is never taken by another
// owner, and while Redis is down nobody extends or ends it.
type ownershipCache struct {
	entries *lru.Cache[string, cachedOwnership]
	bound   int64 // ms
}

type cachedOwnership struct {
	owner string
	exp   int64 // the ownership's idle expiry, Unix ms
	at    int64 // when Redis confirmed it, Unix ms
}

func newOwnershipCache(size int, boundMillis int64) (*ownershipCache, error) {
	c, err := lru.New[string, cachedOwnership](size)
	if err != nil {
		return nil, err
	}
	return &ownershipCache{entries: c, bound: boundMillis}, nil
}

func (c *ownershipCache) confirmed(channel, owner string, exp, at int64) {
	c.entries.Add(channel, cachedOwnership{owner: owner, exp: exp, at: at})
}

// contradicted drops channel's entry when Redis's answer to asker
// contradicts it: nobody owns the channel (owned false: any entry goes), or
// it is not asker's (an entry naming asker goes). An entry naming another
// owner stays: an unexpired ownership is never taken over, so another
// visitor's denied request does not cost the owner its cached answer.
func (c *ownershipCache) contradicted(channel, asker string, owned bool) {
	if e, ok := c.entries.Peek(channel); ok && (!owned || e.owner == asker) {
		c.entries.Remove(channel)
	}
}

// answers reports whether the cache may say channel is owner's at now.
func (c *ownershipCache) answers(channel, owner string, now int64) bool {
	e, ok := c.entries.Get(channel)
	return ok && e.owner == owner && now < e.exp && now-e.at <= c.bound
}
