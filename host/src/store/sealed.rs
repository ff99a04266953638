//! Checksummed records. Events and state blobs are stored with a CRC-32 of
//! their bytes (and key) appended, so a flipped bit, or a record moved under
//! another key, is a named error when read, never served as data.

use crate::error::StoreError;

const CHECKSUM_BYTES: usize = 4;

/// CRC-32 of `body`, combined with one of `key` unless it is empty (an
/// event's position is inside its record and checked when decoded; hashing
/// it again would triple the cost, as crc32fast is slow on tiny inputs).
fn checksum(key: &[u8], body: &[u8]) -> u32 {
    let sum = crc32fast::hash(body);
    if key.is_empty() {
        sum
    } else {
        sum ^ crc32fast::hash(key).rotate_left(13)
    }
}

/// `body` with the checksum of `key` and `body` appended.
pub(crate) fn seal(key: &[u8], mut body: Vec<u8>) -> Vec<u8> {
    let sum = checksum(key, &body);
    body.extend_from_slice(&sum.to_le_bytes());
    body
}

/// The body of a sealed record stored under `key`, if its checksum holds.
/// `what` names the record in the error (`event #12`, `the state of
/// welcome`); it is only called on a mismatch, so a read allocates nothing.
pub(crate) fn unseal<'a>(
    table: &'static str,
    what: impl FnOnce() -> String,
    key: &[u8],
    stored: &'a [u8],
) -> Result<&'a [u8], StoreError> {
    let Some(split) = stored.len().checked_sub(CHECKSUM_BYTES) else {
        return Err(StoreError::Checksum {
            table,
            record: what(),
            detail: format!("{} bytes is too short to hold a checksum", stored.len()),
        });
    };
    let (body, sum) = stored.split_at(split);
    let stored_sum = u32::from_le_bytes(sum.try_into().expect("four bytes"));
    let computed = checksum(key, body);
    if stored_sum != computed {
        return Err(StoreError::Checksum {
            table,
            record: what(),
            detail: format!("stored checksum {stored_sum:08x}, computed {computed:08x}"),
        });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_flipped_bit_or_another_key_fails_the_checksum() {
        let sealed = seal(b"7", b"an event".to_vec());
        assert_eq!(
            unseal("events", || "event #7".into(), b"7", &sealed).unwrap(),
            b"an event"
        );
        assert!(
            unseal("events", || "event #8".into(), b"8", &sealed).is_err(),
            "moved to another key"
        );
        for bit in 0..sealed.len() * 8 {
            let mut flipped = sealed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let err = unseal("events", || "event #7".into(), b"7", &flipped).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("event #7 in table `events` fails its checksum"),
                "{err}"
            );
        }
        assert!(unseal("events", || "event #7".into(), b"7", b"abc").is_err());
    }
}
