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

impl ParquetOptions {
    /// How the compactor writes merged files: slower zstd that compacts
    /// better, and larger row groups.
    pub const MERGED: ParquetOptions = ParquetOptions { zstd_level: 3, row_group_rows: 512 * 1024 };
}

/// Writer properties for files sorted by `order`, with each column encoded
/// for what it holds once rows are sorted by series then time:
///
/// - integer fields: delta encoding (`DELTA_BINARY_PACKED`) and no
///   dictionary. Within a series a counter or gauge moves by small steps, so
///   the deltas need a few bits where a dictionary of their values needs
///   seven or more (TSBS's cpu fields: 4 bits a value instead of 7);
/// - `time`: a dictionary while the timestamps repeat across series (a fleet
///   reporting on the same ticks), delta encoding once they do not;
/// - float fields: a dictionary while values repeat, then `BYTE_STREAM_SPLIT`,
///   which lays out the bytes of each value apart so that zstd finds the
///   slowly changing exponent and high mantissa bytes;
/// - tags and strings: dictionaries, as before (runs of one value per series).
pub fn writer_properties(order: &RowOrder, options: ParquetOptions) -> Result<WriterProperties, ParquetError> {
    use arrow::datatypes::DataType;
    use parquet::basic::Encoding;
    use parquet::schema::types::ColumnPath;
    let sorting: Vec<SortingColumn> = order
        .sort_key
        .iter()
        .map(|&i| SortingColumn { column_idx: i as i32, descending: false, nulls_first: true })
        .collect();
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(options.zstd_level)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(options.row_group_rows))
        .set_sorting_columns(Some(sorting))
        .set_created_by(concat!("hourglassdb ", env!("CARGO_PKG_VERSION")).to_string());
    for (index, field) in order.schema.fields().iter().enumerate() {
        let column = ColumnPath::from(field.name().as_str());
        builder = match field.data_type() {
            _ if index == order.time => builder.set_column_encoding(column, Encoding::DELTA_BINARY_PACKED),
            DataType::Int64 | DataType::UInt64 => builder
                .set_column_dictionary_enabled(column.clone(), false)
                .set_column_encoding(column, Encoding::DELTA_BINARY_PACKED),
            DataType::Float64 => builder.set_column_encoding(column, Encoding::BYTE_STREAM_SPLIT),
            _ => builder,
        };
    }
    Ok(builder.build())
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampNanosecondArray, UInt64Array,
    };
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::Encoding;

    /// Every column type a measurement has, with nulls, repeated and unique
    /// values, big jumps and the extremes of each type, comes back as written,
    /// and each column is encoded as `writer_properties` says.
    #[test]
    fn every_column_type_round_trips_in_its_encoding() {
        // Enough unique times to outgrow the dictionary page (1 MiB) in one row group.
        let rows = 300_000usize;
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, true),
            Field::new("count", DataType::Int64, true),
            Field::new("bytes", DataType::UInt64, true),
            Field::new("load", DataType::Float64, true),
            Field::new("up", DataType::Boolean, true),
            Field::new("time", crate::catalog::time_data_type(), false),
        ]));
        let host: StringArray = (0..rows).map(|i| (i % 7 != 3).then(|| format!("host-{}", i / 1000))).collect();
        let count: Int64Array = (0..rows)
            .map(|i| match i {
                0 => Some(i64::MIN),
                1 => Some(i64::MAX),
                i if i % 11 == 0 => None,
                i => Some((i as i64 % 50) - 25 + if i % 997 == 0 { 1 << 40 } else { 0 }),
            })
            .collect();
        let bytes: UInt64Array =
            (0..rows).map(|i| if i == 2 { Some(u64::MAX) } else { (i % 13 != 0).then_some(i as u64 * 3) }).collect();
        let load: Float64Array = (0..rows)
            .map(|i| match i {
                0 => Some(f64::NAN),
                1 => Some(f64::INFINITY),
                2 => Some(-0.0),
                i => (i % 17 != 0).then_some(i as f64 / 7.0),
            })
            .collect();
        let up: BooleanArray = (0..rows).map(|i| (i % 5 != 0).then_some(i % 2 == 0)).collect();
        // Repeating ticks for the first half (a dictionary), unique times after (the fallback).
        let time: Vec<i64> =
            (0..rows).map(|i| if i < rows / 2 { (i % 10) as i64 * 1_000 } else { i as i64 * 1_000_003 }).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(host),
            Arc::new(count),
            Arc::new(bytes),
            Arc::new(load),
            Arc::new(up),
            Arc::new(TimestampNanosecondArray::from(time).with_timezone(crate::catalog::TIME_ZONE)),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch");
        let order = RowOrder { schema: Arc::clone(&schema), sort_key: vec![0, 5], time: 5 };
        let options = ParquetOptions { zstd_level: 3, row_group_rows: rows };
        let bytes = write_batch(Vec::new(), &batch, &order, options).expect("write");

        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).expect("open");
        let metadata = reader.metadata().clone();
        let read: Vec<RecordBatch> = reader.build().expect("reader").collect::<Result<_, _>>().expect("read");
        let read = arrow::compute::concat_batches(&read[0].schema(), &read).expect("concat");
        assert_eq!(read.num_rows(), rows);
        for (index, column) in batch.columns().iter().enumerate() {
            let back = read.column(index);
            let back = arrow::compute::cast(back, column.data_type()).expect("cast");
            // NaN != NaN: compared by their bits through the formatted values.
            let format = |a: &ArrayRef| {
                (0..a.len())
                    .map(|i| arrow::util::display::array_value_to_string(a, i).expect("format"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(format(column), format(&back), "column {}", schema.field(index).name());
        }

        let encodings = |name: &str| -> Vec<Encoding> {
            let index = schema.index_of(name).expect("column");
            let mut all: Vec<Encoding> =
                metadata.row_groups().iter().flat_map(|g| g.column(index).encodings().collect::<Vec<_>>()).collect();
            all.sort_by_key(|e| *e as i32);
            all.dedup();
            all
        };
        for name in ["count", "bytes"] {
            assert!(encodings(name).contains(&Encoding::DELTA_BINARY_PACKED), "{name}: {:?}", encodings(name));
            assert!(!encodings(name).contains(&Encoding::RLE_DICTIONARY), "{name}: {:?}", encodings(name));
        }
        let time = encodings("time");
        assert!(time.contains(&Encoding::RLE_DICTIONARY) && time.contains(&Encoding::DELTA_BINARY_PACKED), "{time:?}");
        assert!(encodings("host").contains(&Encoding::RLE_DICTIONARY));
        // Unique floats outgrow their dictionary: the fallback splits their bytes.
        assert!(encodings("load").contains(&Encoding::BYTE_STREAM_SPLIT), "{:?}", encodings("load"));
    }
}
