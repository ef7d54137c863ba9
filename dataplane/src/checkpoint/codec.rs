//! Operator state as bytes: a vector of rkyv archives, validated when read back.
//!
//! Every stream type is already rkyv-serializable ([`Data`]), so state reuses it: a key group's
//! entries are written as one archived `Vec<T>`, and restoring checks the archive with bytecheck
//! before deserializing it (a checkpoint is external input, like a peer's buffer).

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::vec::ArchivedVec;

use crate::element::Data;
use crate::shuffle::batch::SliceAsVec;

/// Why bytes are not a valid archive of the expected type.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

/// Serializes `items` as one archived vector.
pub fn encode_vec<T: Data>(items: &[T]) -> Result<Vec<u8>, CodecError> {
    let bytes = rkyv::api::high::to_bytes_in::<_, rancor::Error>(
        &SliceAsVec(items),
        AlignedVec::<16>::new(),
    )
    .map_err(|e| CodecError(format!("cannot serialize state: {e}")))?;
    Ok(bytes.into_vec())
}

/// Validates and deserializes what [`encode_vec`] wrote.
pub fn decode_vec<T: Data>(bytes: &[u8]) -> Result<Vec<T>, CodecError> {
    // Archives must be read from aligned memory; a segment read from storage is not.
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    let archived = rkyv::access::<ArchivedVec<T::Archived>, rancor::Error>(&aligned)
        .map_err(|e| CodecError(format!("not a valid state archive: {e}")))?;
    archived
        .iter()
        .map(|a| {
            rkyv::deserialize::<T, rancor::Error>(a)
                .map_err(|e| CodecError(format!("cannot deserialize state: {e}")))
        })
        .collect()
}

/// Serializes a key group's entries: keys and values as two archived vectors, each preceded by
/// its length.
pub fn encode_entries<K: Data, V: Data>(keys: &[K], values: &[V]) -> Result<Vec<u8>, CodecError> {
    let k = encode_vec(keys)?;
    let v = encode_vec(values)?;
    let mut out = Vec::with_capacity(16 + k.len() + v.len());
    out.extend_from_slice(&(k.len() as u64).to_le_bytes());
    out.extend_from_slice(&k);
    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
    out.extend_from_slice(&v);
    Ok(out)
}

/// Reads what [`encode_entries`] wrote.
pub fn decode_entries<K: Data, V: Data>(bytes: &[u8]) -> Result<Vec<(K, V)>, CodecError> {
    let (k, rest) = split_prefixed(bytes)?;
    let (v, rest) = split_prefixed(rest)?;
    if !rest.is_empty() {
        return Err(CodecError(format!(
            "{} trailing bytes after the entries",
            rest.len()
        )));
    }
    let keys = decode_vec::<K>(k)?;
    let values = decode_vec::<V>(v)?;
    if keys.len() != values.len() {
        return Err(CodecError(format!(
            "{} keys but {} values",
            keys.len(),
            values.len()
        )));
    }
    Ok(keys.into_iter().zip(values).collect())
}

fn split_prefixed(bytes: &[u8]) -> Result<(&[u8], &[u8]), CodecError> {
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(CodecError("truncated state: no length prefix".into()));
    };
    let len = u64::from_le_bytes(*len);
    if len > rest.len() as u64 {
        return Err(CodecError(format!(
            "truncated state: {len} bytes announced, {} present",
            rest.len()
        )));
    }
    Ok(rest.split_at(len as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let keys: Vec<u64> = (0..1000).collect();
        let values: Vec<(String, Vec<i64>)> = keys
            .iter()
            .map(|k| (format!("v{k}"), vec![*k as i64; (*k % 5) as usize]))
            .collect();
        let bytes = encode_entries(&keys, &values).unwrap();
        let back = decode_entries::<u64, (String, Vec<i64>)>(&bytes).unwrap();
        assert_eq!(back.len(), 1000);
        assert_eq!(back[7], (7, ("v7".to_string(), vec![7, 7])));
        assert!(
            decode_entries::<u64, u64>(&[])
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
    }

    #[test]
    fn a_damaged_archive_is_an_error_not_a_panic() {
        let keys: Vec<String> = (0..50).map(|i| format!("key-{i}")).collect();
        let values: Vec<u64> = (0..50).collect();
        let bytes = encode_entries(&keys, &values).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0xff;
            // Either refused, or (for bytes inside string contents) decoded to other values:
            // never a panic or an out-of-bounds read.
            let _ = decode_entries::<String, u64>(&bad);
        }
        for cut in 0..bytes.len() {
            assert!(decode_entries::<String, u64>(&bytes[..cut]).is_err());
        }
    }
}
