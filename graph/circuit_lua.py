"""Lua for `graph.circuit.RedisCircuits`: each operation is one atomic script.

Every script that changes a model gets the same KEYS: the model's circuit, cooldown and
unusable keys, then the `availability` hash and the `refresh_at` sorted set; and ARGV
starting with `now` (epoch ms, from the caller's clock) and the model id. After changing
the model it calls `refresh`, which rewrites the model's row in `availability` (a JSON copy
of its three keys) so `SNAPSHOT` can read every model with one `HVALS` instead of three
commands per model, and files in `refresh_at` when the next of its keys expires, so the
copy follows Redis's own expiry.

A circuit hash holds `state` (closed / open / half_open), `failures`, `open_until` and
`probe_until`; a missing hash is a closed circuit with no failures.
"""

_REFRESH = """
local function refresh(keys, id, now)
  local c = redis.call('HMGET', keys[1], 'state', 'failures', 'open_until', 'probe_until')
  local d = redis.call('GET', keys[2])
  local u = redis.call('HMGET', keys[3], 'fingerprint', 'reason')
  if not (c[1] or d or u[1]) then
    redis.call('HDEL', keys[4], id)
    redis.call('ZREM', keys[5], id)
    return
  end
  redis.call('HSET', keys[4], id, cjson.encode({id, c[1], c[2], c[3], c[4], d, u[1], u[2]}))
  local lapse = false
  for i = 1, 2 do
    local ttl = redis.call('PTTL', keys[i])
    if ttl > 0 and (not lapse or ttl < lapse) then lapse = ttl end
  end
  if lapse then
    redis.call('ZADD', keys[5], now + lapse, id)
  else
    redis.call('ZREM', keys[5], id)
  end
end
"""
_MODEL = _REFRESH + "local now, id = tonumber(ARGV[1]), ARGV[2]\n"

# ARGV: now, id, probe lease, grace.
# Returns "clean" (go ahead; no failures on record), "closed" (go ahead), "probe" (you alone
# may try) or "open" (do not call).
ADMIT = (
    _MODEL
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'open_until', 'probe_until')
if not h[1] then return 'clean' end
if h[1] == 'closed' then return 'closed' end
if h[1] == 'open' and now < tonumber(h[2]) then return 'open' end
if h[1] == 'half_open' and now < tonumber(h[3]) then return 'open' end
local probe_until = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', probe_until)
redis.call('PEXPIRE', KEYS[1], probe_until - now + tonumber(ARGV[4]))
refresh(KEYS, id, now)
return 'probe'
"""
)

# ARGV: now, id, threshold, timeout, grace.
# A failed probe, or the threshold-th consecutive failure, opens the circuit for a fresh
# timeout; failures reported while it is already open (late callers) only add to the count.
# Returns the new state.
RECORD_FAILURE = (
    _MODEL
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'failures')
local state = h[1] or 'closed'
local failures = tonumber(h[2] or '0') + 1
if state == 'open' then
  redis.call('HSET', KEYS[1], 'failures', failures)
elseif state == 'half_open' or failures >= tonumber(ARGV[3]) then
  state = 'open'
  local open_until = now + tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], 'state', state, 'failures', failures, 'open_until', open_until)
  redis.call('HDEL', KEYS[1], 'probe_until')
  redis.call('PEXPIRE', KEYS[1], open_until - now + tonumber(ARGV[5]))
else
  redis.call('HSET', KEYS[1], 'state', state, 'failures', failures)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
refresh(KEYS, id, now)
return state
"""
)

# ARGV: now, id, until, ttl. Keeps whichever cooldown ends later; returns the end that holds.
COOL_DOWN = (
    _MODEL
    + """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local wanted = tonumber(ARGV[3])
if current >= wanted then return current end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
refresh(KEYS, id, now)
return wanted
"""
)

# ARGV: now, id, fingerprint, reason.
MARK_UNUSABLE = (
    _MODEL
    + """
redis.call('HSET', KEYS[3], 'fingerprint', ARGV[3], 'reason', ARGV[4])
refresh(KEYS, id, now)
"""
)

# ARGV: now, id, then the 1-based indexes into KEYS of the model keys to delete.
# Closing a circuit (success), lifting a mark and resetting a model are all deletions.
DELETE = (
    _MODEL
    + """
local deleted = 0
for i = 3, #ARGV do deleted = deleted + redis.call('DEL', KEYS[tonumber(ARGV[i])]) end
if deleted > 0 then refresh(KEYS, id, now) end
"""
)

# KEYS: availability, refresh_at. ARGV: now, key prefix.
# Refreshes (a bounded number of) the rows whose keys have expired since they were written,
# then returns every row, one JSON array per line. The refreshed models' keys are built
# here from the prefix, as they cannot be known in advance: fine on one Redis server, not
# on Redis Cluster.
SNAPSHOT = (
    _REFRESH
    + """
local now, prefix = tonumber(ARGV[1]), ARGV[2]
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, id in ipairs(due) do
  local model = {prefix .. 'model:circuit:' .. id, prefix .. 'model:cooldown:' .. id,
                 prefix .. 'model:unusable:' .. id, KEYS[1], KEYS[2]}
  refresh(model, id, now)
end
return table.concat(redis.call('HVALS', KEYS[1]), '\\n')
"""
)
