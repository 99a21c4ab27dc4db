//! Record framing shared by the WAL, its meta file and snapshot files; the only owner of the
//! frame layout:
//! `[payload length: u32 LE][crc32 of payload: u32 LE][payload]`.
//! A record that is short or fails its CRC marks the end of the valid log: everything from
//! it onwards is a torn write and is truncated on open, never trusted.

pub const HEADER_LEN: usize = 8;
/// Upper bound on one record; a larger length field can only be garbage.
pub const MAX_RECORD: usize = 64 << 20;

pub fn append_frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Splits `buf` into valid frames. Returns each payload with the offset its frame starts at,
/// and the length of the valid prefix (where a torn tail, if any, begins).
pub fn scan_frames(buf: &[u8]) -> (Vec<(u64, &[u8])>, usize) {
    let mut frames = Vec::new();
    let mut pos = 0usize;
    while buf.len() - pos >= HEADER_LEN {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().expect("4 bytes"));
        if len > MAX_RECORD || buf.len() - pos - HEADER_LEN < len {
            break;
        }
        let payload = &buf[pos + HEADER_LEN..pos + HEADER_LEN + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        frames.push((pos as u64, payload));
        pos += HEADER_LEN + len;
    }
    (frames, pos)
}

/// Reads the next frame from a stream. `Ok(None)` at a clean end; a torn or corrupt frame is
/// an `InvalidData` error (streams are only read where the whole file must be valid).
pub fn read_frame(r: &mut impl std::io::Read) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::{Error, ErrorKind};
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut header[got..])?;
        if n == 0 {
            return match got {
                0 => Ok(None),
                _ => Err(Error::new(ErrorKind::InvalidData, "torn frame header")),
            };
        }
        got += n;
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_RECORD {
        return Err(Error::new(ErrorKind::InvalidData, "frame length out of range"));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|_| Error::new(ErrorKind::InvalidData, "torn frame payload"))?;
    if crc32fast::hash(&payload) != crc {
        return Err(Error::new(ErrorKind::InvalidData, "frame checksum mismatch"));
    }
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_and_corrupt_tails_end_the_valid_prefix() {
        let mut buf = Vec::new();
        append_frame(b"one", &mut buf);
        append_frame(b"two", &mut buf);
        let whole = buf.len();
        append_frame(b"three", &mut buf);

        let (frames, valid) = scan_frames(&buf);
        assert_eq!(frames.len(), 3);
        assert_eq!(valid, buf.len());

        // Torn: the last frame is cut short.
        let (frames, valid) = scan_frames(&buf[..buf.len() - 2]);
        assert_eq!(frames.len(), 2);
        assert_eq!(valid, whole);

        // Corrupt: a flipped payload byte fails the CRC.
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let (frames, valid) = scan_frames(&bad);
        assert_eq!(frames.len(), 2);
        assert_eq!(valid, whole);
    }
}
