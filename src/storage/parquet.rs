//! Writing batches as Parquet files in the on-disk format.

use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::sort::RowOrder;

/// How a Parquet file is written.
#[derive(Debug, Clone, Copy)]
pub struct ParquetOptions {
    /// zstd level (1 is fast, 3 compacts better).
    pub zstd_level: i32,
    /// Rows per row group; smaller groups prune better by tag and time.
    pub row_group_rows: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions { zstd_level: 1, row_group_rows: 128 * 1024 }
    }
}

/// Writer properties for files sorted by `order`.
pub fn writer_properties(order: &RowOrder, options: ParquetOptions) -> Result<WriterProperties, ParquetError> {
    let sorting: Vec<SortingColumn> = order
        .sort_key
        .iter()
        .map(|&i| SortingColumn { column_idx: i as i32, descending: false, nulls_first: true })
        .collect();
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(options.zstd_level)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(options.row_group_rows))
        .set_sorting_columns(Some(sorting))
        .set_created_by(concat!("hourglassdb ", env!("CARGO_PKG_VERSION")).to_string())
        .build())
}

/// Writes one batch, sorted by `order`, as a Parquet file into `sink`.
pub fn write_batch<W: Write + Send>(
    sink: W,
    batch: &RecordBatch,
    order: &RowOrder,
    options: ParquetOptions,
) -> Result<W, ParquetError> {
    let mut writer = ArrowWriter::try_new(sink, Arc::clone(&batch.schema()), Some(writer_properties(order, options)?))?;
    writer.write(batch)?;
    writer.into_inner()
}
