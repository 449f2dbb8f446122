-- Takes or renews a process's lease on compacting one table (src/catalog/redis/mod.rs).
-- KEYS: 1 lease, 2 fence
-- ARGV: 1 the process's id, 2 the lease's time to live in ms
-- Returns {'ok', token} while this process holds it (the token, from the
-- fence counter, grows with every new holder and fences commits of earlier
-- ones), or {'held', holder} when another process holds it.
local lease, fence = KEYS[1], KEYS[2]
local current = redis.call('GET', lease)
if current then
  local holder, token = string.match(current, '^(.*)|(%d+)$')
  if holder == ARGV[1] then
    redis.call('PEXPIRE', lease, ARGV[2])
    return {'ok', token}
  end
  return {'held', holder or current}
end
local token = redis.call('INCR', fence)
redis.call('SET', lease, ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return {'ok', tostring(token)}
