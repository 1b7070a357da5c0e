"""Lua for `graph.checkpoint`'s savers: the plain-Redis package's writes, one script each.

Both write exactly the keys and values the package's own `put` and `put_writes` write (its
readers, `list` and `delete_thread` are used unchanged), atomically and in one round trip.
"""

# The package's `put` as one atomic script: the same keys and values, and SET ... EX in
# place of SET then EXPIRE. KEYS: seq, checkpoint, index, threads registry, then one blob
# key per channel written, then (with a TTL) the blob keys of the channels the checkpoint
# keeps from earlier puts. ARGV: checkpoint id, TTL in seconds (0: none), checkpoint
# payload, registry entry, then the payloads of the written blobs in the order of their keys.
#
# Those kept blobs get the checkpoint's expiry too, which the package does not do: a
# checkpoint written late in a thread's life (a paused run resumed, `update_state`) pointed
# at values that expired before it, and read back as a state missing most of its channels.
#
# With a TTL it also prunes the registry, which the package never does: a thread's entry
# outlives its expired checkpoints, so with one thread per request the hash grew by one
# entry per request for ever. Each put checks 16 distinct entries drawn at random
# (HRANDFIELD) and drops those whose index key is gone: a fixed cost, and stale entries
# settle at about one per 15 live threads (when a sixteenth of the hash is stale, a put
# drops one on average, as many as puts add). HSCAN from a stored cursor, used before,
# returns the whole hash while it is small (a listpack: up to `hash-max-listpack-entries`,
# 128 by default, 512 on some servers), so a put checked up to 512 entries: 0.41 ms of
# server time at 500 entries against 0.10 ms now (measured).
# It also drops from the thread's timeline (the index) the oldest two checkpoint ids whose
# checkpoint has expired: the timeline of a thread reused within its TTL otherwise kept
# every id it ever had, and each history read walked them all. A put adds one and drops
# up to two, so stale ids do not pile up.
# The index and checkpoint keys it checks are not in KEYS: fine on one Redis server, which
# is what this package supports (it is not cluster-aware either).
PUT = """
local seq = redis.call('INCR', KEYS[1])
local ttl = tonumber(ARGV[2])
local function put(key, value)
  if ttl > 0 then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
end
put(KEYS[2], ARGV[3])
for i = 5, #ARGV do put(KEYS[i], ARGV[i]) end
if ttl > 0 then for i = #ARGV + 1, #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end end
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('HSET', KEYS[4], KEYS[3], ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[3], ttl)
  for _, entry in ipairs(redis.call('HRANDFIELD', KEYS[4], 16)) do
    if redis.call('EXISTS', entry) == 0 then redis.call('HDEL', KEYS[4], entry) end
  end
  local base = string.sub(KEYS[2], 1, #KEYS[2] - #ARGV[1])
  for _, old in ipairs(redis.call('ZRANGE', KEYS[3], 0, 1)) do
    if redis.call('EXISTS', base .. old) == 0 then redis.call('ZREM', KEYS[3], old) end
  end
end
return seq
"""


# The package's `put_writes` as one atomic script (it read EXISTS and HKEYS first, then
# wrote). KEYS: the writes hash. ARGV: TTL in seconds (0: none), then (field, payload,
# replace) triples; a task's regular writes are kept if already there (HSETNX), its
# special ones (error, interrupt, resume, scheduled) replace (HSET), as in the package.
PUT_WRITES = """
for i = 2, #ARGV, 3 do
  if ARGV[i + 2] == '1' then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  else
    redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
"""
