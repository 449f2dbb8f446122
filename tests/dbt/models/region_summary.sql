-- Per region, over the view cpu_by_region: the hours with data, the samples,
-- the highest hourly mean, and the first and last hour.
{{ config(materialized='table') }}

select
    region,
    count(*) as hours,
    cast(sum(samples) as bigint) as samples,
    max(max_avg_usage) as peak_avg_usage,
    min(hour) as first_hour,
    max(hour) as last_hour
from {{ ref('cpu_by_region') }}
group by region
