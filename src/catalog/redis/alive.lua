-- Heartbeats of writers (src/catalog/redis/deletes.rs) or of readers
-- (readers.rs), by Redis's clock.
-- KEYS: 1 alive (ZSET: writer id or reader URL -> last heartbeat, ms)
-- ARGV: 1 the member beating ('' to only read), 2 how long a heartbeat
--       counts (ms)
-- Returns the members whose last heartbeat is that recent.
local alive = KEYS[1]
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if ARGV[1] ~= '' then
  redis.call('ZADD', alive, ms, ARGV[1])
end
-- A member silent for a day is forgotten here (a writer is not forgotten in
-- the writers hash).
redis.call('ZREMRANGEBYSCORE', alive, '-inf', ms - 86400000)
return redis.call('ZRANGEBYSCORE', alive, ms - tonumber(ARGV[2]), '+inf')
