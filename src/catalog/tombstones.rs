//! Tombstones: the record of a `DELETE`, which hides the rows it matches
//! until the compactor has rewritten every file that may hold them.
//!
//! A delete matches rows by series and time only: a time range and
//! conditions on tags, all of which must hold. That is what InfluxDB's
//! delete predicate can say, and it keeps a tombstone decidable from the
//! columns every file is sorted by.
//!
//! A tombstone is ordered with the writes by its WAL sequence. It applies to
//! the rows of every source written before it: the write buffer loses them
//! when the delete is applied, and a file does when its `wal_sequence` (the
//! newest write it may hold) is below the tombstone's. Rows written after
//! the delete are never hidden by it.

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, StringArray};
use arrow::compute::kernels::boolean::{and_kleene, not, or_kleene};
use arrow::compute::kernels::cmp::{eq, gt_eq, lt_eq};
use arrow::compute::{cast, is_not_null};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::TIME_COLUMN;

/// Which rows a delete removes: those in `[min_time, max_time]` (inclusive,
/// nanoseconds) for which every tag condition holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeletePredicate {
    /// The earliest time deleted.
    pub min_time: i64,
    /// The latest time deleted.
    pub max_time: i64,
    /// Conditions on tags; a row with a NULL tag meets no condition on it.
    #[serde(default)]
    pub tags: Vec<TagCondition>,
}

/// `tag IN (values)`, or `tag NOT IN (values)` when `negated` (`=` and `!=`
/// are one value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TagCondition {
    /// The tag column.
    pub tag: String,
    /// The values it is compared with.
    pub values: Vec<String>,
    /// True for `!=` and `NOT IN`.
    #[serde(default)]
    pub negated: bool,
}

/// A delete as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tombstone {
    /// The delete's WAL sequence: it hides rows of sources whose WAL
    /// sequence is below this.
    pub sequence: u64,
    /// When it was issued (nanoseconds since the epoch).
    pub issued_at: i64,
    /// The rows it hides.
    pub predicate: DeletePredicate,
    /// Ordered by the shared catalog rather than by a WAL: `sequence` is the
    /// table's change sequence there, and a file's own WAL sequence (its
    /// writer's) says nothing about it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

impl Tombstone {
    /// Whether the delete may hide rows of `file`: it came after the
    /// deletes carried out on the file (and, ordered by this process's WAL,
    /// after the file's newest write), and meets its time range.
    pub fn applies_to(&self, file: &super::FileEntry) -> bool {
        let past = if self.shared { file.deletes_applied } else { file.wal_sequence.max(file.deletes_applied) };
        self.sequence > past && self.predicate.overlaps(file.min_time, file.max_time)
    }
}

/// The sequences of the deletes that hide no row any longer and may be
/// forgotten: at or below `through` (the newest every source of new files
/// has carried out on the rows it still holds) and applying to none of
/// `files`, the table's listed files.
pub fn carried_out(tombstones: &[std::sync::Arc<Tombstone>], files: &[super::FileEntry], through: u64) -> Vec<u64> {
    tombstones
        .iter()
        .filter(|t| t.sequence <= through && !files.iter().any(|f| t.applies_to(f)))
        .map(|t| t.sequence)
        .collect()
}

impl DeletePredicate {
    /// Every row, at any time.
    pub fn everything() -> DeletePredicate {
        DeletePredicate { min_time: i64::MIN, max_time: i64::MAX, tags: Vec::new() }
    }

    /// Whether rows in `[min_ns, max_ns]` may match.
    pub fn overlaps(&self, min_ns: i64, max_ns: i64) -> bool {
        self.min_time <= max_ns && min_ns <= self.max_time
    }

    /// Whether every row in `[min_ns, max_ns]` matches, whatever its tags.
    pub fn covers(&self, min_ns: i64, max_ns: i64) -> bool {
        self.tags.is_empty() && self.min_time <= min_ns && max_ns <= self.max_time
    }

    /// The tags the predicate reads.
    pub fn tag_names(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().map(|c| c.tag.as_str())
    }

    /// Which rows of `batch` match (true) or not (false, never NULL). A tag
    /// the batch lacks is NULL in every row.
    pub fn matches(&self, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
        let rows = batch.num_rows();
        let Some(time) = batch.column_by_name(TIME_COLUMN) else {
            return Err(ArrowError::SchemaError(format!("a delete needs the {TIME_COLUMN} column")));
        };
        let time = nanoseconds(time)?;
        let min = Int64Array::new_scalar(self.min_time);
        let max = Int64Array::new_scalar(self.max_time);
        let mut matched = and_kleene(&gt_eq(&time, &min)?, &lt_eq(&time, &max)?)?;
        for condition in &self.tags {
            let holds = match batch.column_by_name(&condition.tag) {
                Some(column) => condition.holds(column)?,
                None => BooleanArray::from(vec![false; rows]),
            };
            matched = and_kleene(&matched, &holds)?;
        }
        // NULL (a NULL time) is not a match.
        let known = is_not_null(&matched)?;
        and_kleene(&matched, &known).map(|m| BooleanArray::new(m.values().clone(), None))
    }
}

impl TagCondition {
    /// Where the condition holds: false where the tag is NULL.
    fn holds(&self, column: &ArrayRef) -> Result<BooleanArray, ArrowError> {
        let values = cast(column, &DataType::Utf8)?;
        let mut any = BooleanArray::from(vec![false; values.len()]);
        for value in &self.values {
            any = or_kleene(&any, &eq(&values, &StringArray::new_scalar(value.as_str()))?)?;
        }
        let any = if self.negated { not(&any)? } else { any };
        let present = is_not_null(&values)?;
        and_kleene(&any, &present).map(|m| BooleanArray::new(m.values().clone(), m.nulls().cloned()))
    }
}

/// A timestamp column as nanoseconds since the epoch, whatever its unit
/// and zone: the values of every time column the engine compares.
pub(crate) fn nanoseconds(time: &ArrayRef) -> Result<Int64Array, ArrowError> {
    let zone = match time.data_type() {
        DataType::Timestamp(_, zone) => zone.clone(),
        other => return Err(ArrowError::SchemaError(format!("time is {other}, not a timestamp"))),
    };
    let ns = cast(&cast(time, &DataType::Timestamp(TimeUnit::Nanosecond, zone))?, &DataType::Int64)?;
    ns.as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| ArrowError::CastError("time did not cast to Int64".into()))
}

impl DeletePredicate {
    /// The rows of `batch` the predicate does not match.
    pub fn remove_from(&self, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        let matched = self.matches(batch)?;
        if matched.true_count() == 0 {
            return Ok(batch.clone());
        }
        arrow::compute::filter_record_batch(batch, &not(&matched)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Int32Type, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let host: DictionaryArray<Int32Type> = vec![Some("a"), Some("b"), None, Some("a")].into_iter().collect();
        let time = TimestampNanosecondArray::from(vec![10, 20, 30, 40]).with_timezone("UTC");
        let schema = Schema::new(vec![
            Field::new("host", host.data_type().clone(), true),
            Field::new("time", time.data_type().clone(), false),
        ]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(host), Arc::new(time)]).expect("batch")
    }

    fn tag(values: &[&str], negated: bool) -> TagCondition {
        TagCondition { tag: "host".into(), values: values.iter().map(|v| v.to_string()).collect(), negated }
    }

    #[test]
    fn a_predicate_matches_by_time_and_tags_and_never_a_null_tag() {
        let cases = [
            (DeletePredicate::everything(), vec![true, true, true, true]),
            (DeletePredicate { min_time: 20, max_time: 30, tags: vec![] }, vec![false, true, true, false]),
            (
                DeletePredicate { tags: vec![tag(&["a"], false)], ..DeletePredicate::everything() },
                vec![true, false, false, true],
            ),
            (
                DeletePredicate { tags: vec![tag(&["a"], true)], ..DeletePredicate::everything() },
                vec![false, true, false, false],
            ),
            (
                DeletePredicate { min_time: 0, max_time: 35, tags: vec![tag(&["a", "b"], false)] },
                vec![true, true, false, false],
            ),
            (
                DeletePredicate {
                    tags: vec![TagCondition { tag: "rack".into(), values: vec!["r".into()], negated: true }],
                    ..DeletePredicate::everything()
                },
                vec![false, false, false, false],
            ),
        ];
        for (predicate, expected) in cases {
            let matched: Vec<bool> =
                predicate.matches(&batch()).expect("matches").iter().map(|m| m == Some(true)).collect();
            assert_eq!(matched, expected, "{predicate:?}");
        }
        let predicate = DeletePredicate { min_time: 15, max_time: 35, tags: vec![] };
        assert_eq!(predicate.remove_from(&batch()).expect("filter").num_rows(), 2);
    }
}
