//! gRPC length-prefixed message framing (1 byte compressed flag, 4 bytes big-endian length,
//! then the protobuf bytes), on byte buffers only.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use crate::XdsError;

/// Default largest message accepted. istiod sends a delta subscription's whole first
/// state in one response: ~283 B per workload, so 283 MB for a mesh of 1M workloads
/// (`zring-loadgen scale`; 64 MiB refused every mesh above ~230k, and ztunnel's 200 MB
/// refuses 1M). The control plane is trusted; this only bounds a broken one.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 30;

/// Frames one message.
pub fn encode<M: Message>(m: &M) -> Bytes {
    let len = m.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(len as u32);
    // Cannot fail: the buffer has room for `encoded_len` bytes.
    let _ = m.encode(&mut out);
    out.freeze()
}

/// The most buffer space a [`Decoder`] keeps once it holds no partial message.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Collects bytes from the stream and yields whole messages.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_MESSAGE)
    }
}

impl Decoder {
    pub fn new(max: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            max,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.reserve_frame();
    }

    /// Once a message's length is known, makes room for all of it at once. A cold start's
    /// response is one message of tens of MB: grown by doubling from the first chunk, the
    /// buffer was copied ~11 times and twice the message's pages were touched.
    fn reserve_frame(&mut self) {
        match self.frame_len() {
            Some(len) if len <= self.max && 5 + len > self.buf.len() => {
                self.buf.reserve(5 + len - self.buf.len());
            }
            _ => {}
        }
    }

    /// The length of the message at the front, once its 5-byte prefix is in.
    fn frame_len(&self) -> Option<usize> {
        let prefix = self.buf.get(1..5)?;
        Some(u32::from_be_bytes(prefix.try_into().ok()?) as usize)
    }

    /// The next whole message's bytes, `Ok(None)` while it is incomplete.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, XdsError> {
        let Some(len) = self.frame_len() else {
            return Ok(None);
        };
        let flag = self.buf[0];
        if flag != 0 {
            return Err(XdsError::Compressed(flag));
        }
        if len > self.max {
            return Err(XdsError::TooLarge { len, max: self.max });
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        self.buf.advance(5);
        let frame = self.buf.split_to(len).freeze();
        if len > KEEP_CAPACITY {
            // Let the buffer of a large message (a cold start's) go with the message: the
            // rest, sliced from the same allocation, would hold all its pages until the
            // next message needs more room.
            self.buf = BytesMut::from(&self.buf[..]);
        }
        Ok(Some(frame))
    }

    /// The next whole message decoded as `M`.
    pub fn next_message<M: Message + Default>(
        &mut self,
        what: &'static str,
    ) -> Result<Option<M>, XdsError> {
        match self.next_frame()? {
            None => Ok(None),
            Some(b) => M::decode(b)
                .map(Some)
                .map_err(|source| XdsError::Decode { what, source }),
        }
    }

    /// Call at end of stream: an error when a partial message is left.
    pub fn finish(&self) -> Result<(), XdsError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(XdsError::Truncated(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Node;

    fn node(id: &str) -> Node {
        Node {
            id: id.into(),
            ..Default::default()
        }
    }

    /// A large message's first chunk makes room for the whole message; a length over the
    /// limit reserves nothing (and `next_frame` refuses it).
    #[test]
    fn a_message_is_buffered_in_one_allocation() {
        let big = node(&"x".repeat(1 << 20));
        let wire = encode(&big);
        let mut d = Decoder::default();
        d.push(&wire[..16 * 1024]);
        assert!(d.buf.capacity() >= wire.len());
        d.push(&wire[16 * 1024..]);
        assert_eq!(d.next_message::<Node>("node").unwrap(), Some(big));
        let mut small = Decoder::new(1024);
        small.push(&wire[..16 * 1024]);
        assert!(small.buf.capacity() < wire.len());
        assert!(matches!(small.next_frame(), Err(XdsError::TooLarge { .. })));
    }

    #[test]
    fn messages_split_at_every_byte_come_out_whole_and_in_order() {
        let mut wire = encode(&node("a")).to_vec();
        wire.extend_from_slice(&encode(&node("bb")));
        for cut in 0..wire.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                d.push(part);
                while let Some(n) = d.next_message::<Node>("node").unwrap() {
                    got.push(n.id);
                }
            }
            assert_eq!(got, ["a", "bb"], "cut at {cut}");
            d.finish().unwrap();
        }
    }

    #[test]
    fn a_large_message_does_not_leave_its_buffer_behind() {
        let big = node(&"x".repeat(4 * KEEP_CAPACITY));
        let mut d = Decoder::default();
        d.push(&encode(&big));
        assert!(d.buf.capacity() > KEEP_CAPACITY);
        let frame = d.next_frame().unwrap().unwrap();
        assert!(
            frame.is_unique(),
            "the decoder still holds the message's buffer"
        );
        assert_eq!(Node::decode(frame).unwrap(), big);
        assert!(d.buf.capacity() <= KEEP_CAPACITY, "{}", d.buf.capacity());
        d.push(&encode(&node("small")));
        let small = d.next_message::<Node>("node").unwrap();
        assert_eq!(small.map(|n| n.id).as_deref(), Some("small"));
    }

    #[test]
    fn oversized_compressed_and_truncated_frames_are_refused() {
        let mut d = Decoder::new(3);
        d.push(&encode(&node("long id")));
        assert!(matches!(
            d.next_frame(),
            Err(XdsError::TooLarge { max: 3, .. })
        ));
        let mut d = Decoder::default();
        d.push(&[1, 0, 0, 0, 0]);
        assert!(matches!(d.next_frame(), Err(XdsError::Compressed(1))));
        let mut d = Decoder::default();
        d.push(&encode(&node("x"))[..4]);
        assert!(d.next_frame().unwrap().is_none());
        assert!(matches!(d.finish(), Err(XdsError::Truncated(4))));
    }
}
