-- The relations document (views, tables made by SQL, schemas), if it is
-- still the version the change was made on (src/catalog/redis/relations.rs).
-- The token document is stored by the same script (src/catalog/redis/tokens.rs).
-- KEYS: 1 relations
-- ARGV: 1 the version it replaces (0: there is none yet), 2 the document JSON,
--       3 the latest time (ms since the epoch, Redis's clock) the change may
--       name new table files at ('0': it names none): later, the orphan
--       sweep may already have judged them.
-- Returns {'ok', new version}, {'conflict', version now} or {'late', ''}:
-- nothing is changed then.
local relations = KEYS[1]
local current = tonumber(redis.call('HGET', relations, 'version') or '0')
if current ~= tonumber(ARGV[1]) then
  return {'conflict', tostring(current)}
end
local deadline = tonumber(ARGV[3])
if deadline > 0 then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > deadline then
    return {'late', ''}
  end
end
redis.call('HSET', relations, 'version', current + 1, 'json', ARGV[2])
return {'ok', tostring(current + 1)}
