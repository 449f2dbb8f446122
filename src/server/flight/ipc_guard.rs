//! Checks of Arrow IPC from clients before arrow decodes it. arrow trusts
//! the sizes a message declares: a compressed buffer's uncompressed length
//! is allocated before it is decompressed, and when a damaged or hostile
//! length (2^59 bytes) makes that allocation fail, the process aborts,
//! which no error handling can catch. So every message a client sends is
//! checked here first: its compressed buffers may not claim more than a
//! bound in all.

use arrow::ipc::{root_as_message, MessageHeader};

/// Most bytes the compressed buffers of one IPC message may decompress to,
/// whatever the call allows in all: a client's batch of a few MiB that
/// claims more than this is forged or broken, and arrow would allocate it.
pub(crate) const MAX_DECOMPRESSED_MESSAGE_BYTES: usize = 256 << 20;

/// Refuses an IPC message (its flatbuffer `header` and its `body`) whose
/// compressed buffers say they decompress to more than `limit` bytes (and
/// never more than [`MAX_DECOMPRESSED_MESSAGE_BYTES`]).
pub(crate) fn check_message(header: &[u8], body: &[u8], limit: usize) -> Result<(), String> {
    let limit = limit.min(MAX_DECOMPRESSED_MESSAGE_BYTES);
    let message = root_as_message(header).map_err(|e| format!("not an Arrow IPC message: {e}"))?;
    let batch = match message.header_type() {
        MessageHeader::RecordBatch => message.header_as_record_batch(),
        MessageHeader::DictionaryBatch => message.header_as_dictionary_batch().and_then(|d| d.data()),
        _ => None,
    };
    let Some(batch) = batch else { return Ok(()) };
    if batch.compression().is_none() {
        return Ok(());
    }
    let mut claimed: u64 = 0;
    for buffer in batch.buffers().into_iter().flatten() {
        if buffer.length() == 0 {
            continue;
        }
        // Each compressed buffer starts with its uncompressed length, -1
        // when it was left uncompressed.
        let prefix = usize::try_from(buffer.offset())
            .ok()
            .and_then(|at| body.get(at..at.checked_add(8)?))
            .ok_or("a compressed buffer lies outside its message")?;
        let declared =
            i64::from_le_bytes(prefix.try_into().map_err(|_| "a compressed buffer lies outside its message")?);
        let size = match declared {
            -1 => buffer.length().saturating_sub(8),
            n if n >= 0 => n,
            _ => return Err(format!("a compressed buffer claims {declared} bytes")),
        };
        claimed = claimed.saturating_add(u64::try_from(size).unwrap_or(u64::MAX));
    }
    if claimed > limit as u64 {
        return Err(format!("the compressed buffers of one message claim {claimed} bytes, past the bound of {limit}"));
    }
    Ok(())
}

/// Checks every message of an IPC stream held whole in `bytes`, as
/// [`check_message`] does, `limit` bytes for them all.
pub(crate) fn check_stream(bytes: &[u8], limit: usize) -> Result<(), String> {
    let word = |at: usize| bytes.get(at..at + 4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    let mut at = 0;
    let mut left = limit;
    while at < bytes.len() {
        let mut length = word(at).ok_or("the stream ends inside a message length")?;
        at += 4;
        if length == u32::MAX {
            length = word(at).ok_or("the stream ends inside a message length")?;
            at += 4;
        }
        if length == 0 {
            break;
        }
        let end = at.checked_add(length as usize).filter(|&end| end <= bytes.len()).ok_or("the stream is cut")?;
        let header = &bytes[at..end];
        let message = root_as_message(header).map_err(|e| format!("not an Arrow IPC message: {e}"))?;
        let body_length = usize::try_from(message.bodyLength()).map_err(|_| "a message body of negative length")?;
        let body_end = end.checked_add(body_length).filter(|&e| e <= bytes.len()).ok_or("the stream is cut")?;
        check_message(header, &bytes[end..body_end], left)?;
        left = left.saturating_sub(body_length);
        at = body_end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
    use std::sync::Arc;

    fn stream(compression: Option<arrow::ipc::CompressionType>) -> Vec<u8> {
        let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![7; 1000])) as _)]).unwrap();
        let options = IpcWriteOptions::default().try_with_compression(compression).unwrap();
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::try_new_with_options(&mut bytes, &batch.schema(), options).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        bytes
    }

    #[test]
    fn honest_streams_pass_and_a_lying_length_is_refused() {
        assert_eq!(check_stream(&stream(None), 1 << 20), Ok(()));
        let mut compressed = stream(Some(arrow::ipc::CompressionType::ZSTD));
        assert_eq!(check_stream(&compressed, 1 << 20), Ok(()));
        assert!(check_stream(&compressed, 100).is_err(), "8,000 bytes of values claimed, 100 allowed");
        assert_eq!(check_stream(&compressed, usize::MAX), Ok(()), "no bound but the guard's own");
        // The first compressed buffer's length prefix, made to claim 2^59 bytes.
        let at = find_prefix(&compressed, 8000).expect("the values' buffer declares 8,000 bytes");
        compressed[at..at + 8].copy_from_slice(&(1i64 << 59).to_le_bytes());
        let refused = check_stream(&compressed, 1 << 20).unwrap_err();
        assert!(refused.contains("claim"), "{refused}");
        assert!(check_stream(&compressed, usize::MAX).is_err(), "refused however large the call's bound");
    }

    fn find_prefix(bytes: &[u8], length: i64) -> Option<usize> {
        bytes.windows(8).position(|w| w == length.to_le_bytes())
    }
}
