package deviceauth

import "sync"

// DefaultKeyCacheSize is the size NewKeyCache uses when given 0 or less.
const DefaultKeyCacheSize = 10000

// KeyCache memoizes ParseCredential. Parsing a certificate costs about 10 us
// and the bridge needs a device's keys on every connect, while credentials
// rarely change: the cache turns that into a map lookup. It is safe for
// concurrent use.
//
// The cache is bounded: it keeps two generations of at most size/2 entries
// each. A hit in the older generation promotes the entry; when the current
// generation is full it becomes the older one and the previous older one is
// dropped. That approximates LRU while letting hits in the current generation
// take only a read lock. Errors are not cached: credentials in the store were
// validated when written, so failures are rare.
type KeyCache struct {
	genSize int

	mu   sync.RWMutex
	cur  map[cacheKey]*Key
	prev map[cacheKey]*Key
}

type cacheKey struct {
	format int32
	pem    string
}

// NewKeyCache returns a cache holding at most size parsed keys
// (DefaultKeyCacheSize when size <= 0).
func NewKeyCache(size int) *KeyCache {
	if size <= 0 {
		size = DefaultKeyCacheSize
	}
	gen := max(size/2, 1)
	return &KeyCache{genSize: gen, cur: make(map[cacheKey]*Key), prev: map[cacheKey]*Key{}}
}

// Parse returns ParseCredential(format, pemText), from the cache when it can.
// The returned Key is shared with other callers and must not be modified.
func (c *KeyCache) Parse(format int32, pemText string) (*Key, error) {
	ck := cacheKey{format, pemText}
	c.mu.RLock()
	k, ok := c.cur[ck]
	c.mu.RUnlock()
	if ok {
		return k, nil
	}

	c.mu.Lock()
	if k, ok := c.cur[ck]; ok {
		c.mu.Unlock()
		return k, nil
	}
	if k, ok := c.prev[ck]; ok {
		c.insertLocked(ck, k)
		c.mu.Unlock()
		return k, nil
	}
	c.mu.Unlock()

	// Parse outside the lock so that a slow parse never stalls the hits of
	// other connections; two goroutines may parse the same key at once,
	// which is harmless.
	k, err := ParseCredential(format, pemText)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.insertLocked(ck, k)
	c.mu.Unlock()
	return k, nil
}

func (c *KeyCache) insertLocked(ck cacheKey, k *Key) {
	if len(c.cur) >= c.genSize {
		c.prev = c.cur
		c.cur = make(map[cacheKey]*Key, c.genSize)
	}
	c.cur[ck] = k
}

// Len returns the number of cached keys.
func (c *KeyCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := len(c.cur)
	for ck := range c.prev {
		if _, dup := c.cur[ck]; !dup {
			n++
		}
	}
	return n
}
