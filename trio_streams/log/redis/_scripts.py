"""Lua scripts: the steps that must be atomic in Redis.

Each touches only keys of one run (one hash tag, so one cluster slot), or of
one key slot (one (owner, key): the slot hash and its queue share a hash
tag), or one single key.
"""

from __future__ import annotations

from typing import Final

#: Mark a run ``dead`` if, and only if, it is live and its owner's lease is
#: gone -- atomically, so of many instances noticing at once exactly one
#: claims it. Appends the ``dead`` terminal event (seq = last stored + 1, in
#: the codec's line format) and finishes the meta hash.
#:
#: With ARGV[5] = "1", a run with no meta hash at all (a key claim whose
#: instance died before it saved the run) gets a tombstone instead: status
#: ``dead`` and nothing else (readers see no run), which fences a late save.
#:
#: KEYS: meta, lease, events. ARGV: timestamp, error JSON, meta TTL ms,
#: events TTL ms, tombstone flag. Returns the dead event's seq, -1 for a
#: tombstone, or 0 if not claimed.
CLAIM_DEAD: Final = """
local meta, lease, events = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', lease) == 1 then return 0 end
local status = redis.call('HGET', meta, 'status')
if not status then
  if ARGV[5] ~= '1' then return 0 end
  redis.call('HSET', meta, 'status', 'dead')
  redis.call('PEXPIRE', meta, ARGV[3])
  return -1
end
if status ~= 'running' and status ~= 'queued' then return 0 end
local last = 0
local top = redis.call('XREVRANGE', events, '+', '-', 'COUNT', 1)
if #top > 0 then last = tonumber(string.match(top[1][1], '^(%d+)')) end
local seq = last + 1
local result = redis.call('HGET', meta, 'result') or 'null'
local partial = 'false'
local data = '{"result":' .. result
if result ~= 'null' then
  partial = 'true'
  data = data .. ',"partial":true'
end
data = data .. ',"error":' .. ARGV[2] .. '}'
redis.call('XADD', events, seq .. '-' .. seq, 'e', seq .. '\\t' .. ARGV[1] .. '\\t"dead"\\t' .. data)
redis.call('HSET', meta, 'status', 'dead', 'ended_at', ARGV[1], 'last_seq', tostring(seq),
  'error', ARGV[2], 'partial', partial, 'reason', 'null')
redis.call('PEXPIRE', meta, ARGV[3])
redis.call('PEXPIRE', events, ARGV[4])
return seq
"""

# -- key slots ---------------------------------------------------------------------------
# A key slot is one (owner, key): a hash (``run``: the holder, ``fence``: a
# counter that grows with every new holder, ``at``: when the holder got it,
# Redis time in ms) and a list (the FIFO of runs waiting). Both carry the same
# hash tag, so each script below is atomic on a Redis Cluster too. All take
# KEYS: slot, queue (CLAIM_KEY and RELEASE_KEY also the run's "gone" marker).

#: The holder's part of a reply: ``holder, age_ms`` (a queue head promoted
#: here when the hash had expired under a waiting queue).
_KEY_PRELUDE = """
local slot, queue = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = redis.call('HGET', slot, 'run')
if not holder then
  holder = redis.call('LPOP', queue)
  if holder then
    redis.call('HINCRBY', slot, 'fence', 1)
    redis.call('HSET', slot, 'run', holder, 'at', now)
    redis.call('PEXPIRE', slot, ARGV[2])
  end
end
local function age() return now - tonumber(redis.call('HGET', slot, 'at') or now) end
"""

#: Claim the key for a run, or queue it, or refuse -- the one decision of a
#: keyed start, atomic across instances. Idempotent: a retried claim of the
#: same run answers its state again; a claim withdrawn before it arrived
#: (its "gone" marker, see RELEASE_KEY) is refused as ``{-2}``.
#: ARGV: run id, TTL ms, policy (reject | interrupt | rollback | enqueue), max queued.
#: Returns ``{1, fence}`` (holds), ``{0, holder, age}`` (reject: held),
#: ``{-1, queued}`` (queue full), ``{2, holder, age, position}`` (queued), or
#: for interrupt and rollback ``{3, holder, age, position, ids to cancel...}``.
CLAIM_KEY: Final = (
    _KEY_PRELUDE
    + """
local run, policy = ARGV[1], ARGV[3]
if redis.call('EXISTS', KEYS[3]) == 1 then return {-2} end
if holder == run then return {1, tonumber(redis.call('HGET', slot, 'fence'))} end
if not holder then
  local fence = redis.call('HINCRBY', slot, 'fence', 1)
  redis.call('HSET', slot, 'run', run, 'at', now)
  redis.call('PEXPIRE', slot, ARGV[2])
  return {1, fence}
end
local ahead = redis.call('LRANGE', queue, 0, -1)
local position = 0
for i, id in ipairs(ahead) do
  if id == run then position = i; break end
end
if position == 0 then
  if policy == 'reject' then return {0, holder, age()} end
  if #ahead >= tonumber(ARGV[4]) then return {-1, #ahead} end
  redis.call('RPUSH', queue, run)
  redis.call('PEXPIRE', queue, ARGV[2])
  position = #ahead + 1
end
if policy ~= 'interrupt' and policy ~= 'rollback' then return {2, holder, age(), position} end
local out = {3, holder, age(), position, holder}
for i = 1, position - 1 do out[#out + 1] = ahead[i] end
return out
"""
)

#: Where a run stands: ``{1, fence}`` holds the key, ``{2, holder, age,
#: position}`` waits, ``{-1}`` is in neither (its claim is gone). Refreshes
#: the TTLs of what it finds. ARGV: run id, TTL ms.
KEY_TURN: Final = (
    _KEY_PRELUDE
    + """
local run = ARGV[1]
if holder == run then
  redis.call('PEXPIRE', slot, ARGV[2])
  redis.call('PEXPIRE', queue, ARGV[2])
  return {1, tonumber(redis.call('HGET', slot, 'fence'))}
end
local position = redis.call('LPOS', queue, run)
if not position then return {-1} end
redis.call('PEXPIRE', queue, ARGV[2])
return {2, holder or '', age(), position + 1}
"""
)

#: A run gives its key up: if it holds it, the queue's head becomes the
#: holder (a new fence) in the same step; if it waits, it leaves the queue.
#: With ARGV[3] > 0 (a start withdrawing a claim whose answer it never got)
#: it also leaves a "gone" marker living that many ms, so that claim, should
#: it arrive later on another connection, is refused.
#: ARGV: run id, TTL ms, marker TTL ms or 0. Returns ``{1, next run, fence}``
#: (released and promoted), ``{1}`` (released, nobody waits), or ``{0, removed}``.
RELEASE_KEY: Final = """
local slot, queue = KEYS[1], KEYS[2]
local run = ARGV[1]
if ARGV[3] ~= '0' then redis.call('SET', KEYS[3], '1', 'PX', ARGV[3]) end
if redis.call('HGET', slot, 'run') ~= run then
  return {0, redis.call('LREM', queue, 0, run)}
end
local nxt = redis.call('LPOP', queue)
if not nxt then
  redis.call('HDEL', slot, 'run', 'at')
  return {1}
end
local t = redis.call('TIME')
local fence = redis.call('HINCRBY', slot, 'fence', 1)
redis.call('HSET', slot, 'run', nxt, 'at', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('PEXPIRE', slot, ARGV[2])
return {1, nxt, fence}
"""

#: The holder's owner keeps its key slot alive (lease renewal): 1, or 0 if
#: the run no longer holds the key. ARGV: run id, TTL ms.
REFRESH_KEY: Final = """
if redis.call('HGET', KEYS[1], 'run') ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

#: Write a run's meta hash unless the run was already declared ``dead`` by
#: another instance (a dead run's status is final: its owner lost the lease).
#: KEYS: meta. ARGV: TTL ms, then field, value, field, value, ...
#: Returns 1 if written, 0 if the run is dead.
SAVE_META: Final = """
if redis.call('HGET', KEYS[1], 'status') == 'dead' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

#: Append one entry (a batch of events) to a run's stream -- unless the run
#: was declared ``dead`` (its owner lost the lease: fenced), or an entry
#: reaching this batch's last seq is already there (a retried flush: a
#: duplicate). Atomic, so a stale owner can never write past a dead event.
#: KEYS: events, meta. ARGV: entry id, payload, last seq.
#: Returns 1 appended, 0 duplicate, -1 fenced.
APPEND_EVENTS: Final = """
if redis.call('HGET', KEYS[2], 'status') == 'dead' then return -1 end
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top > 0 and tonumber(string.match(top[1][1], '^(%d+)')) >= tonumber(ARGV[3]) then return 0 end
redis.call('XADD', KEYS[1], ARGV[1], 'e', ARGV[2])
return 1
"""

#: :data:`APPEND_EVENTS` for many entries (of any runs) in one call: a single
#: Redis only (the keys of one call span runs, so slots, on a Cluster). A
#: flush sends one, so a blocked ``XREAD`` on these streams (a mirror's shared
#: read, ``_tails.py``) is served once, after the call, with every stream it
#: moved -- Redis serves blocked clients after each top-level command, so one
#: ``EVALSHA`` per entry woke it with the first stream only. Entries are
#: appended in argument order, each exactly as ``APPEND_EVENTS`` would; an
#: error stops the call where it is (what was appended stays: a retry skips
#: it as a duplicate). An entry with a TTL > 0 (a run's first) sets the
#: stream's TTL after its append, whatever the append answered.
#: KEYS: events, meta of each entry. ARGV: entry id, payload, last seq, TTL
#: ms (0: none) of each entry. Returns one answer per entry: 1, 0 or -1.
APPEND_BATCH: Final = """
local out = {}
for i = 1, #KEYS, 2 do
  local events, meta, a = KEYS[i], KEYS[i + 1], 2 * (i - 1)
  local answer = 1
  if redis.call('HGET', meta, 'status') == 'dead' then
    answer = -1
  else
    local top = redis.call('XREVRANGE', events, '+', '-', 'COUNT', 1)
    if #top > 0 and tonumber(string.match(top[1][1], '^(%d+)')) >= tonumber(ARGV[a + 3]) then
      answer = 0
    else
      redis.call('XADD', events, ARGV[a + 1], 'e', ARGV[a + 2])
    end
  end
  if ARGV[a + 4] ~= '0' then redis.call('PEXPIRE', events, ARGV[a + 4]) end
  out[#out + 1] = answer
end
return out
"""

#: Renew the owner's lease unless the run was declared ``dead``. Atomic with
#: respect to CLAIM_DEAD: either the claim sees the lease, or the renewal
#: sees ``dead`` (and the owner stops the run). Re-creates a lease that
#: expired (e.g. while Redis was down): nobody claimed the run meanwhile.
#: KEYS: meta, lease. ARGV: instance id, lease TTL ms. Returns 1 renewed, 0 dead.
RENEW_LEASE: Final = """
if redis.call('HGET', KEYS[1], 'status') == 'dead' then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""
