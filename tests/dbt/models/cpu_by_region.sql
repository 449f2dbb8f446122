-- Per region and hour, over hourly_cpu: how many hosts reported, their samples
-- and the highest of their hourly means.
{{ config(materialized='view') }}

select
    region,
    hour,
    count(*) as hosts,
    cast(sum(samples) as bigint) as samples,
    max(avg_usage) as max_avg_usage
from {{ ref('hourly_cpu') }}
group by region, hour
