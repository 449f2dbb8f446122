SELECT
  date_bin(INTERVAL '60 second', time, TIMESTAMP '1970-01-01 00:00:00') AS "time", host AS metric, avg(usage) AS "usage"
FROM cpu
WHERE time BETWEEN '2023-11-14T22:00:00Z' AND '2023-11-14T23:00:00Z' AND host IN ('a', 'b')
GROUP BY 1, 2 ORDER BY 1;
SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'cpu' ORDER BY column_name
