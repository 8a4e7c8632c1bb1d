"""The Lua scripts that move a delivery between states atomically (see outbox.py for the state machine).

Every transition checks the delivery's `attempt_count` against the attempt a caller was given, so a stale
task (a message Celery redelivered, a lease that expired while its sender was merely slow) can never apply
an attempt twice or resurrect a finished delivery. CLAIM builds per-delivery keys from a prefix, which a
Redis Cluster would refuse; kombu's Redis transport does not support Cluster either.
"""

from __future__ import annotations

ENQUEUE = """
-- KEYS: delivery, due, index   ARGV: id, now, field, value, ...
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""

CLAIM = """
-- KEYS: due, leased   ARGV: now, lease_until, limit, delivery key prefix
-- Due deliveries and deliveries whose lease expired become `dispatched` under a fresh lease.
local out = {}
local function take(id)
  local key = ARGV[4] .. id
  local state = redis.call('HGET', key, 'state')
  if state == 'pending' or state == 'dispatched' or state == 'sending' then
    redis.call('HSET', key, 'state', 'dispatched')
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    table.insert(out, id)
    table.insert(out, redis.call('HGET', key, 'attempt_count'))
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', KEYS[1], id)
  take(id)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])) do
  take(id)
end
return out
"""

START = """
-- KEYS: delivery, leased   ARGV: id, attempt, now, lease_until
if redis.call('HGET', KEYS[1], 'attempt_count') ~= ARGV[2] then return false end
local state = redis.call('HGET', KEYS[1], 'state')
local lease = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0')
if state == 'dispatched' or (state == 'sending' and lease <= tonumber(ARGV[3])) then
  redis.call('HSET', KEYS[1], 'state', 'sending')
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  return redis.call('HGETALL', KEYS[1])
end
return false
"""

FINISH = """
-- KEYS: delivery, attempts, leased, due, dead
-- ARGV: id, attempt, attempt record, outcome (delivered|retry|dead), now, next_at, retention_s, status, error
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[3])
local state = redis.call('HGET', KEYS[1], 'state')
if redis.call('HGET', KEYS[1], 'attempt_count') ~= ARGV[2] or (state ~= 'sending' and state ~= 'dispatched') then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'attempt_count', 1)
redis.call('HSET', KEYS[1], 'last_attempt_at', ARGV[5], 'last_status', ARGV[8], 'last_error', ARGV[9])
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[4] == 'retry' then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'next_attempt_at', ARGV[6])
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'state', ARGV[4], 'next_attempt_at', '')
  if ARGV[4] == 'dead' then redis.call('ZADD', KEYS[5], ARGV[5], ARGV[1]) end
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
return 1
"""

RELEASE = """
-- KEYS: delivery, leased, due   ARGV: id, attempt, due_at
if redis.call('HGET', KEYS[1], 'attempt_count') ~= ARGV[2] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'dispatched' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'pending', 'next_attempt_at', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
"""

REPLAY = """
-- KEYS: delivery, attempts, due, dead, index   ARGV: id, now
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'dead' and state ~= 'delivered' then return state end
local count = redis.call('HGET', KEYS[1], 'attempt_count')
redis.call('HSET', KEYS[1], 'state', 'pending', 'round_start', count, 'next_attempt_at', ARGV[2])
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
return 'replayed'
"""
