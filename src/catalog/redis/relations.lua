-- The relations document (views, tables made by SQL, schemas), if it is
-- still the version the change was made on (src/catalog/redis/relations.rs).
-- KEYS: 1 relations
-- ARGV: 1 the version it replaces (0: there is none yet), 2 the document JSON
-- Returns {'ok', new version} or {'conflict', version now}: nothing is changed then.
local relations = KEYS[1]
local current = tonumber(redis.call('HGET', relations, 'version') or '0')
if current ~= tonumber(ARGV[1]) then
  return {'conflict', tostring(current)}
end
redis.call('HSET', relations, 'version', current + 1, 'json', ARGV[2])
return {'ok', tostring(current + 1)}
