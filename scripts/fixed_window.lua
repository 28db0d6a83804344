-- fixed_window.lua: one fixed-window rate-limit decision, atomically.
--
-- KEYS[1]  the counter key (one key per call, so the script runs on Redis Cluster)
-- ARGV[1]  limit: requests allowed per window (integer >= 1)
-- ARGV[2]  window: the window's length in milliseconds (integer >= 1)
-- ARGV[3]  cost: what this call spends (integer >= 0; 1 for a request, 0 to peek)
-- Reply    {count, ttl}: the count including this call's cost, and the milliseconds
--          left in the window. Allowed when count <= limit. A denied call spends
--          nothing, so the stored count never passes the limit on its behalf.
--
-- Mirrored in Go by scripts.FixedWindow (this file) and limiter.decode (the reply).
-- Time comes from Redis alone (PTTL), never from an application server's clock.
--
-- This is the tutorial's GET / SETEX key window 0 / INCR / GET made atomic:
-- INCRBY creates an absent key as 0 before adding, and a key without an expiry
-- (new, or left by any other client) gets the window as its expiry, so no
-- counter can ever live forever.
local limit = tonumber(ARGV[1])
local cost = tonumber(ARGV[3])
local count = redis.call('INCRBY', KEYS[1], cost)
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = tonumber(ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if count > limit and cost > 0 then
  redis.call('DECRBY', KEYS[1], cost)
end
return {count, ttl}
