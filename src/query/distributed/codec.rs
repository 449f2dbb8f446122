//! How HourglassDB's own plan nodes cross to a worker: the table scan's root
//! ([`TimeseriesScanExec`], which reports what the catalog pruned), the
//! merge of overlapping files ([`DeduplicateExec`]) and the gap fill
//! ([`GapFillExec`]). Their inputs are DataFusion's own nodes (Parquet
//! scans, sorts, unions, aggregates), which datafusion-proto encodes; these
//! carry a few numbers and names, written as JSON (a gap fill's output
//! schema as datafusion-proto's bytes within it).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::{internal_err, DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use crate::query::dedup::DeduplicateExec;
use crate::query::gapfill::exec::{GapFillColumns, GapFillExec};
use crate::query::gapfill::fill::Buckets;
use crate::query::table::{ScanParts, TimeseriesScanExec};

/// The codec of HourglassDB's plan nodes, registered on coordinators and
/// workers alike.
#[derive(Debug, Default)]
pub struct HourglassCodec;

/// One encoded node.
#[derive(Debug, Serialize, Deserialize)]
enum Node {
    TimeseriesScan(ScanParts),
    Deduplicate { key_columns: Vec<usize>, source_column: usize, reader_bytes: usize },
    GapFill { columns: GapFillColumns, buckets: Buckets, schema: Vec<u8> },
}

impl PhysicalExtensionCodec for HourglassCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let node: Node = serde_json::from_slice(buf)
            .map_err(|e| DataFusionError::Internal(format!("decoding an HourglassDB plan node: {e}")))?;
        let [input] = inputs else {
            return internal_err!("an HourglassDB plan node has one input, got {}", inputs.len());
        };
        let input = Arc::clone(input);
        Ok(match node {
            Node::TimeseriesScan(parts) => Arc::new(TimeseriesScanExec::from_parts(parts, input)),
            Node::Deduplicate { key_columns, source_column, reader_bytes } => {
                Arc::new(DeduplicateExec::try_new(input, key_columns, source_column)?.with_reader_bytes(reader_bytes))
            }
            Node::GapFill { columns, buckets, schema } => {
                let schema = decode_schema(&schema)?;
                Arc::new(GapFillExec::try_new(input, columns, buckets, schema)?)
            }
        })
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let encoded = if let Some(scan) = node.downcast_ref::<TimeseriesScanExec>() {
            Node::TimeseriesScan(scan.parts())
        } else if let Some(dedup) = node.downcast_ref::<DeduplicateExec>() {
            let (key_columns, source_column, reader_bytes) = dedup.parts();
            Node::Deduplicate { key_columns: key_columns.to_vec(), source_column, reader_bytes }
        } else if let Some(gap_fill) = node.downcast_ref::<GapFillExec>() {
            let (columns, buckets, schema) = gap_fill.parts();
            Node::GapFill { columns: columns.clone(), buckets, schema: encode_schema(schema)? }
        } else {
            return internal_err!("HourglassDB's codec cannot encode {}", node.name());
        };
        serde_json::to_writer(buf, &encoded)
            .map_err(|e| DataFusionError::Internal(format!("encoding an HourglassDB plan node: {e}")))
    }
}

/// `schema` as datafusion-proto's bytes.
fn encode_schema(schema: &SchemaRef) -> Result<Vec<u8>> {
    use prost::Message;
    let proto = datafusion_proto::protobuf::Schema::try_from(schema.as_ref())
        .map_err(|e| DataFusionError::Internal(format!("encoding a gap fill's schema: {e}")))?;
    Ok(proto.encode_to_vec())
}

/// A schema from [`encode_schema`]'s bytes.
fn decode_schema(bytes: &[u8]) -> Result<SchemaRef> {
    use prost::Message;
    let proto = datafusion_proto::protobuf::Schema::decode(bytes)
        .map_err(|e| DataFusionError::Internal(format!("decoding a gap fill's schema: {e}")))?;
    let schema = arrow::datatypes::Schema::try_from(&proto)
        .map_err(|e| DataFusionError::Internal(format!("decoding a gap fill's schema: {e}")))?;
    Ok(Arc::new(schema))
}
