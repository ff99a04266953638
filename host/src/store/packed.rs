//! Large blobs (plugin components and their precompiled artifacts) as they
//! are stored: zstd-compressed. A Python or JavaScript component is 12–20 MB
//! and its artifact larger; both compress several times over.

use crate::error::StoreError;

/// The first bytes of a zstd frame. Neither a component (`\0asm`) nor an
/// artifact (an ELF file) starts with them, so blobs stored uncompressed by
/// an older version still read.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Fast enough to add little to a deploy, and most of zstd's gain on code.
const LEVEL: i32 = 3;

/// Bytes compressed for storage. Built where there is time for it (off the
/// writer thread, next to the compile), stored as they are.
#[derive(Clone, Debug)]
pub struct Packed(Vec<u8>);

impl Packed {
    /// Compress `bytes`.
    pub fn new(bytes: &[u8]) -> Packed {
        Packed(zstd::bulk::compress(bytes, LEVEL).expect("compressing into a growing buffer cannot fail"))
    }

    /// The stored form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The original bytes of a stored blob.
pub(crate) fn unpack(table: &'static str, stored: &[u8]) -> Result<Vec<u8>, StoreError> {
    if !stored.starts_with(&ZSTD_MAGIC) {
        return Ok(stored.to_vec());
    }
    zstd::stream::decode_all(stored).map_err(|e| StoreError::Corrupt {
        table,
        message: format!("a compressed blob does not decompress: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_blobs_unpack_and_unpacked_ones_read_as_they_are() {
        let component = b"\0asm\x0d\0\x01\0 and some code".repeat(100);
        let packed = Packed::new(&component);
        assert!(packed.as_bytes().len() < component.len());
        assert_eq!(unpack("components", packed.as_bytes()).unwrap(), component);
        assert_eq!(unpack("components", &component).unwrap(), component);
        let mut broken = packed.as_bytes().to_vec();
        broken.truncate(broken.len() / 2);
        assert!(unpack("components", &broken).is_err());
    }
}
