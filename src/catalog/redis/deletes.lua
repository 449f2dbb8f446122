-- A table's shared deletes (src/catalog/redis/deletes.rs), atomically.
-- KEYS: 1 tombstones, 2 seq, 3 log, 4 applied
-- ARGV: 1 the operation, then:
--   'add', 2 the most live deletes the table may have, 3 the tombstone's JSON,
--     holding its id, 4 that id: takes the table's next change sequence for
--     it. Returns {'ok', seq} (that of the delete with this id when it is in
--     already: a retry after a lost reply), or {'full', count} with nothing
--     changed.
--   'remove', 2.. the sequences of deletes to forget. Returns {'ok', count}.
--   'applied', 2 writer id, 3 sequence: raises what the writer carried out
--     to the sequence (never lowers it). Returns {'ok', current}.
local tombstones, seq, log, applied = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op = ARGV[1]
local function logged()
  local next = redis.call('INCR', seq)
  redis.call('ZADD', log, next, next .. '|deletes')
  redis.call('ZREMRANGEBYRANK', log, 0, -10001)
  return next
end
if op == 'add' then
  local stored = redis.call('HGETALL', tombstones)
  local needle = '"id":"' .. ARGV[4] .. '"'
  for i = 1, #stored, 2 do
    if string.find(stored[i + 1], needle, 1, true) then
      return {'ok', stored[i]}
    end
  end
  local live = #stored / 2
  if live >= tonumber(ARGV[2]) then
    return {'full', tostring(live)}
  end
  -- The change sequence orders the delete with the table's commits, and a
  -- later delete always gets a larger one.
  local next = logged()
  redis.call('HSET', tombstones, next, ARGV[3])
  return {'ok', tostring(next)}
elseif op == 'remove' then
  local removed = 0
  for i = 2, #ARGV do
    removed = removed + redis.call('HDEL', tombstones, ARGV[i])
  end
  if removed > 0 then
    logged()
  end
  return {'ok', tostring(removed)}
elseif op == 'applied' then
  local current = tonumber(redis.call('HGET', applied, ARGV[2]) or '0')
  if tonumber(ARGV[3]) > current then
    redis.call('HSET', applied, ARGV[2], ARGV[3])
    current = tonumber(ARGV[3])
  end
  return {'ok', tostring(current)}
end
return redis.error_reply('unknown operation ' .. tostring(op))
