-- A table's new schema, if the schema is still the version it extends
-- (src/catalog/redis/mod.rs).
-- KEYS: 1 schema, 2 seq, 3 log
-- ARGV: 1 the version it extends (0: the table is new), 2 the schema JSON
-- Returns {'ok', seq} or {'conflict', version now}: nothing is changed then.
local schema, seq, log = KEYS[1], KEYS[2], KEYS[3]
local current = tonumber(redis.call('HGET', schema, 'version') or '0')
if current ~= tonumber(ARGV[1]) then
  return {'conflict', tostring(current)}
end
redis.call('HSET', schema, 'version', current + 1, 'json', ARGV[2])
local next = redis.call('INCR', seq)
redis.call('ZADD', log, next, next .. '|schema')
redis.call('ZREMRANGEBYRANK', log, 0, -10001)
return {'ok', tostring(next)}
