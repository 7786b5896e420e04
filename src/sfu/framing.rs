//! RFC 4571 framing for ICE-TCP: every STUN, DTLS, RTP or RTCP packet travels behind a
//! two-byte big-endian length, because TCP itself keeps no packet boundaries.
//!
//! Pure logic, no IO: the connection task feeds in whatever each read returned and takes out
//! whole packets, so the framing is tested without sockets.

/// The largest frame accepted from a client. Media packets stay under the path MTU (about
/// 1200 bytes from browsers); anything bigger is not WebRTC traffic, and refusing it keeps
/// the memory a connection can pin down to one small buffer.
pub(crate) const MAX_FRAME_BYTES: usize = 2048;

/// The length prefix.
const HEADER_BYTES: usize = 2;

/// Why a connection's byte stream cannot be framed any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// A client announced a frame above the limit; the connection must be closed, since the
    /// stream cannot be resynchronised once a length is distrusted.
    #[error("a frame of {0} bytes is larger than the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    /// An outgoing packet does not fit a 16-bit length.
    #[error("a packet of {0} bytes cannot be framed")]
    Unframeable(usize),
}

/// Reassembles frames from a TCP byte stream, however the reads split or merge them.
#[derive(Debug, Default)]
pub(crate) struct FrameDecoder {
    /// Bytes received and not yet handed out; whole frames are taken from `start`.
    buf: Vec<u8>,
    /// Where the next unread frame begins. Consumed bytes are only dropped on the next
    /// `extend`, so taking several frames from one read does not shift the buffer each time.
    start: usize,
}

impl FrameDecoder {
    pub(crate) fn new() -> Self {
        FrameDecoder::default()
    }

    /// Appends the bytes of one read.
    ///
    /// The caller takes every complete frame before the next read, so the buffer never holds
    /// more than one read plus one partial frame.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's payload, `None` until more bytes arrive, or an error that
    /// ends the connection. Empty frames carry nothing and are skipped.
    pub(crate) fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        loop {
            let pending = &self.buf[self.start..];
            let Some(header) = pending.first_chunk::<HEADER_BYTES>() else {
                return Ok(None);
            };
            let len = usize::from(u16::from_be_bytes(*header));
            if len > MAX_FRAME_BYTES {
                return Err(FrameError::TooLarge(len));
            }
            if pending.len() < HEADER_BYTES + len {
                return Ok(None);
            }
            let begin = self.start + HEADER_BYTES;
            self.start = begin + len;
            if len > 0 {
                return Ok(Some(&self.buf[begin..begin + len]));
            }
        }
    }
}

/// One packet with its length prefix, ready to write in a single call.
pub(crate) fn encode(packet: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = u16::try_from(packet.len()).map_err(|_| FrameError::Unframeable(packet.len()))?;
    let mut frame = Vec::with_capacity(HEADER_BYTES + packet.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(packet);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `reads` one after the other and returns every frame taken out, or the error.
    fn check(reads: &[&[u8]]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for read in reads {
            decoder.extend(read);
            while let Some(frame) = decoder.next_frame()? {
                frames.push(frame.to_vec());
            }
        }
        Ok(frames)
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        encode(payload).unwrap()
    }

    #[test]
    fn encode_prefixes_the_big_endian_length() {
        assert_eq!(frame(b"abc"), vec![0, 3, b'a', b'b', b'c']);
        assert_eq!(frame(&[7; 300])[..2], [1, 44]);
        assert_eq!(encode(&vec![0; 70_000]), Err(FrameError::Unframeable(70_000)));
    }

    #[test]
    fn one_frame_per_read() {
        assert_eq!(check(&[&frame(b"stun"), &frame(b"dtls")]), Ok(vec![b"stun".to_vec(), b"dtls".to_vec()]));
    }

    #[test]
    fn frames_split_across_reads_are_reassembled() {
        let a = frame(&[1; 1500]);
        // Split inside the header, then inside the payload, then a byte at a time.
        assert_eq!(check(&[&a[..1], &a[1..2], &a[2..700], &a[700..]]), Ok(vec![vec![1; 1500]]));
        let bytes: Vec<&[u8]> = a.chunks(1).collect();
        assert_eq!(check(&bytes), Ok(vec![vec![1; 1500]]));
    }

    #[test]
    fn several_frames_in_one_read_come_out_in_order() {
        let mut read = Vec::new();
        for payload in [&b"one"[..], b"two", b"three"] {
            read.extend(frame(payload));
        }
        // A partial fourth frame stays buffered until its end arrives.
        let fourth = frame(b"four");
        read.extend_from_slice(&fourth[..3]);
        assert_eq!(
            check(&[&read, &fourth[3..]]),
            Ok(vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec(), b"four".to_vec()])
        );
    }

    #[test]
    fn empty_frames_are_skipped() {
        let mut read = vec![0, 0];
        read.extend(frame(b"x"));
        read.extend([0, 0]);
        assert_eq!(check(&[&read]), Ok(vec![b"x".to_vec()]));
    }

    #[test]
    fn an_oversize_frame_is_refused_as_soon_as_its_header_arrives() {
        assert_eq!(check(&[&frame(&[0; MAX_FRAME_BYTES])]), Ok(vec![vec![0; MAX_FRAME_BYTES]]));
        let too_big = u16::try_from(MAX_FRAME_BYTES + 1).unwrap().to_be_bytes();
        assert_eq!(check(&[&too_big]), Err(FrameError::TooLarge(MAX_FRAME_BYTES + 1)));
        // Also after good frames in the same read, and for the largest length a client can send.
        let mut read = frame(b"ok");
        read.extend([0xff, 0xff]);
        assert_eq!(check(&[&read]), Err(FrameError::TooLarge(65_535)));
    }
}
