"""Lua scripts: the steps that must be atomic in Redis.

Each touches only keys of one run (one hash tag, so one cluster slot), or one
single key.
"""

from __future__ import annotations

from typing import Final

#: Mark a run ``dead`` if, and only if, it is live and its owner's lease is
#: gone -- atomically, so of many instances noticing at once exactly one
#: claims it. Appends the ``dead`` terminal event (seq = last stored + 1, in
#: the codec's line format) and finishes the meta hash.
#:
#: KEYS: meta, lease, events. ARGV: timestamp, error JSON, meta TTL ms,
#: events TTL ms. Returns the dead event's seq, or 0 if not claimed.
CLAIM_DEAD: Final = """
local meta, lease, events = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', lease) == 1 then return 0 end
local status = redis.call('HGET', meta, 'status')
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

#: Delete a key only if it still holds the given value (a key's holder run).
#: KEYS: the key. ARGV: the value.
DELETE_IF_EQUAL: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
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
