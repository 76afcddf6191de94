//! The small part of RFC 6455 the harness needs: the handshake key and frame encoding.
//! Used by the echoing backend and by the test client.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Error, Result};

/// The GUID appended to the client's key (RFC 6455 §1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest frame the harness accepts; test messages are small.
const MAX_FRAME: u64 = 16 * 1024 * 1024;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(sha1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// A fresh `Sec-WebSocket-Key`: 16 unpredictable-enough bytes, base64.
pub fn new_key() -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&random_u64().to_le_bytes());
    STANDARD.encode(bytes)
}

/// Random bits from std's randomly keyed hasher; good enough for test nonces and masks
/// without a `rand` dependency.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// A client frame mask (RFC 6455 §5.3).
pub(crate) fn random_mask() -> [u8; 4] {
    let [a, b, c, d, ..] = random_u64().to_le_bytes();
    [a, b, c, d]
}

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Reads one frame, unmasking it if masked. `Ok(None)` on end of stream at a frame boundary.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Frame>> {
    let mut head = [0u8; 2];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::io("reading a websocket frame")(e)),
    }
    let fin = head[0] & 0x80 != 0;
    let opcode = head[0] & 0x0F;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7F {
        126 => u64::from(
            reader
                .read_u16()
                .await
                .map_err(Error::io("reading a websocket length"))?,
        ),
        127 => reader
            .read_u64()
            .await
            .map_err(Error::io("reading a websocket length"))?,
        n => u64::from(n),
    };
    if len > MAX_FRAME {
        return Err(Error::Protocol(format!("websocket frame of {len} bytes")));
    }
    let mut mask = [0u8; 4];
    if masked {
        reader
            .read_exact(&mut mask)
            .await
            .map_err(Error::io("reading a websocket mask"))?;
    }
    let len = usize::try_from(len).map_err(|_| Error::Protocol("frame too large".into()))?;
    let mut payload = vec![0; len];
    reader
        .read_exact(&mut payload)
        .await
        .map_err(Error::io("reading a websocket payload"))?;
    if masked {
        apply_mask(&mut payload, mask);
    }
    Ok(Some(Frame {
        fin,
        opcode,
        payload,
    }))
}

/// Writes one final frame; clients pass a mask, servers pass `None`.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> Result<()> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = out.len();
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
        out.extend_from_slice(payload);
        apply_mask(&mut out[start + 4..], mask);
    } else {
        out.extend_from_slice(payload);
    }
    writer
        .write_all(&out)
        .await
        .map_err(Error::io("writing a websocket frame"))?;
    writer
        .flush()
        .await
        .map_err(Error::io("flushing a websocket frame"))
}

fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn new_keys_are_16_bytes_and_differ() {
        let a = new_key();
        assert_eq!(STANDARD.decode(&a).unwrap().len(), 16);
        assert_ne!(a, new_key());
    }

    #[tokio::test]
    async fn frames_round_trip_masked_and_unmasked_at_every_length_form() {
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut wire = Vec::new();
                write_frame(&mut wire, OP_BINARY, &payload, mask)
                    .await
                    .unwrap();
                if mask.is_some() && len > 0 {
                    assert!(!wire.ends_with(&payload), "payload must be masked");
                }
                let frame = read_frame(&mut &wire[..]).await.unwrap().unwrap();
                assert_eq!(
                    frame,
                    Frame {
                        fin: true,
                        opcode: OP_BINARY,
                        payload: payload.clone()
                    }
                );
            }
        }
    }

    #[tokio::test]
    async fn rfc_masked_hello_decodes() {
        // RFC 6455 §5.7: a single-frame masked text message containing "Hello".
        let wire = [
            0x81u8, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let frame = read_frame(&mut &wire[..]).await.unwrap().unwrap();
        assert_eq!(frame.opcode, OP_TEXT);
        assert_eq!(frame.payload, b"Hello");
        assert!(
            read_frame(&mut &wire[wire.len()..])
                .await
                .unwrap()
                .is_none()
        );
    }
}
