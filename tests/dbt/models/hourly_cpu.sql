-- Per host and hour: the mean of usage, the number of samples and the sum of n.
{{ config(materialized='table') }}

select
    host,
    region,
    date_trunc('hour', time) as hour,
    avg(usage) as avg_usage,
    count(*) as samples,
    cast(sum(n) as bigint) as n_total
from {{ source('hourglass', 'cpu') }}
group by host, region, date_trunc('hour', time)
