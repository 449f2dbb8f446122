CREATE VIEW hot AS SELECT date_bin(INTERVAL '5 minutes', time) AS t, host, max(usage)::float8 AS peak FROM cpu GROUP BY 1, 2;
INSERT INTO cpu (host, usage, time) VALUES ('x', 1.5e0, TIMESTAMP '2023-11-14 22:13:20'), ($1, $2, now());
COPY cpu (host, usage, n, time) FROM STDIN WITH (FORMAT csv, HEADER true);
SELECT "time" AT TIME ZONE 'UTC', E'a\tb', 'it''s', -1::int8, ARRAY[1,2][1], x->>'k' FROM cpu LIMIT 1 OFFSET 2
