-- One commit to one partition of one table, atomically (src/catalog/redis/mod.rs).
-- KEYS: 1 files:<hour>, 2 wal:<hour>, 3 partitions, 4 seq, 5 log, 6 commits, 7 lease
-- ARGV: 1 hour, 2 commit id, 3 writer id, 4 WAL sequence (0: none), 5 the
--       compaction lease token the commit is made under ('' for none),
--       6 the latest time (ms since the epoch, Redis's clock) the commit may
--       add files at: later, the orphan sweep may already have judged them,
--       7 count of removed ids, the ids, then the count of added files, then (id, entry JSON) pairs.
-- Returns {'ok', seq}, {'applied', '0'} when this commit id already went in
-- (a retry after a lost reply), {'missing', id} when a file to remove is not
-- listed (another process removed it), {'fenced', holder} when the lease
-- it was made under is no longer this writer's, or {'late', ''} past its
-- deadline: nothing is changed then.
local files, wal, partitions, seq, log, commits, lease = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local hour, commit_id, writer, wal_sequence, token = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
if redis.call('ZSCORE', commits, commit_id) then
  return {'applied', '0'}
end
if token ~= '' then
  local holder = redis.call('GET', lease)
  if holder ~= writer .. '|' .. token then
    return {'fenced', holder or '(nobody: the lease expired)'}
  end
end
local i = 7
local removes = {}
for j = 1, tonumber(ARGV[i]) do
  removes[j] = ARGV[i + j]
end
i = i + #removes + 1
local adds = {}
for j = 1, tonumber(ARGV[i]) do
  adds[j] = {ARGV[i + 2 * j - 1], ARGV[i + 2 * j]}
end
if #adds > 0 then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[6]) then
    return {'late', ''}
  end
end
for _, id in ipairs(removes) do
  if redis.call('HEXISTS', files, id) == 0 then
    return {'missing', id}
  end
end
for _, id in ipairs(removes) do
  redis.call('HDEL', files, id)
end
for _, add in ipairs(adds) do
  redis.call('HSET', files, add[1], add[2])
end
if wal_sequence > 0 then
  local current = tonumber(redis.call('HGET', wal, writer) or '0')
  if wal_sequence > current then
    redis.call('HSET', wal, writer, ARGV[4])
  end
end
redis.call('ZADD', partitions, hour, hour)
local next = redis.call('INCR', seq)
-- The log says who made each change, and under which lease.
redis.call('ZADD', log, next, next .. '|' .. hour .. '|' .. writer .. '|' .. token)
redis.call('ZREMRANGEBYRANK', log, 0, -10001)
redis.call('ZADD', commits, next, commit_id)
redis.call('ZREMRANGEBYRANK', commits, 0, -100001)
return {'ok', tostring(next)}
