//! Protobuf fields read in place, for the messages a cold start holds by the hundred
//! thousand: a field's bytes are a slice of the message, so a caller can borrow its
//! strings and build its own records without prost's owned `String`s and `Vec`s.
//!
//! Only what such a caller needs is read: varints, length-delimited fields and the two
//! fixed widths. Anything else (groups, a truncated field, a bad varint) is a
//! [`Malformed`] error; a caller decodes such a message with prost instead, which skips
//! groups and names the problem as prost does.

/// The message holds something [`Fields`] does not read (or it is broken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// One field's value as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    /// A string, bytes, an embedded message or a packed repeated field.
    Bytes(&'a [u8]),
    Fixed64(u64),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    /// A length-delimited field's bytes.
    pub fn bytes(self) -> Result<&'a [u8], Malformed> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(Malformed),
        }
    }

    /// A string field (protobuf requires UTF-8).
    pub fn str(self) -> Result<&'a str, Malformed> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Malformed)
    }

    /// A varint field.
    pub fn varint(self) -> Result<u64, Malformed> {
        match self {
            Value::Varint(v) => Ok(v),
            _ => Err(Malformed),
        }
    }
}

/// The fields of one message, in wire order: `(number, value)`.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(message: &'a [u8]) -> Self {
        Fields { rest: message }
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for (i, b) in self.rest.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                // As prost: a tenth byte holds only the top bit.
                if i == 9 && *b > 1 {
                    return Err(Malformed);
                }
                self.rest = &self.rest[i + 1..];
                return Ok(v);
            }
        }
        Err(Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.rest.len() {
            return Err(Malformed);
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), Malformed> {
        // As prost: a key above u32's range is refused.
        let key = u32::try_from(self.varint()?).map_err(|_| Malformed)?;
        let number = key >> 3;
        if number == 0 {
            return Err(Malformed);
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(fixed(self.take(8)?))),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(fixed(self.take(4)?))),
            _ => return Err(Malformed),
        };
        Ok((number, value))
    }
}

fn fixed<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(b);
    out
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            // Nothing after a broken field can be read.
            self.rest = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::workload as pw;

    fn all(b: &[u8]) -> Result<Vec<(u32, Value<'_>)>, Malformed> {
        Fields::new(b).collect()
    }

    #[test]
    fn fields_come_in_wire_order_borrowed_from_the_message() {
        let w = pw::Workload {
            uid: "uid-1".into(),
            name: "w".into(),
            addresses: vec![vec![10, 0, 0, 1], vec![10, 0, 0, 2]],
            tunnel_protocol: 1,
            ..Default::default()
        };
        let b = w.encode_to_vec();
        let f = all(&b).unwrap();
        let numbers: Vec<u32> = f.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 3, 3, 5, 20]);
        assert_eq!(f[0].1.str(), Ok("w"));
        assert_eq!(f[2].1.bytes(), Ok(&[10, 0, 0, 2][..]));
        assert_eq!(f[3].1, Value::Varint(1));
        assert_eq!(f[4].1.str(), Ok("uid-1"));
        let inside = f[4].1.bytes().unwrap().as_ptr() as usize;
        assert!((b.as_ptr() as usize..b.as_ptr() as usize + b.len()).contains(&inside));
    }

    #[test]
    fn fixed_widths_and_large_varints_are_read() {
        // field 1 fixed64, field 2 fixed32, field 3 varint u64::MAX
        let mut b = vec![0x09];
        b.extend_from_slice(&7u64.to_le_bytes());
        b.push(0x15);
        b.extend_from_slice(&9u32.to_le_bytes());
        b.push(0x18);
        b.extend_from_slice(&[0xff; 9]);
        b.push(0x01);
        let f = all(&b).unwrap();
        assert_eq!(
            f,
            [
                (1, Value::Fixed64(7)),
                (2, Value::Fixed32(9)),
                (3, Value::Varint(u64::MAX))
            ]
        );
    }

    #[test]
    fn what_it_cannot_read_is_malformed_and_ends_the_fields() {
        for bad in [
            &[0x0a, 0x05, b'a'][..], // length past the end
            &[0x08][..],             // varint missing
            &[0x08, 0x80][..],       // varint cut
            &[0x0b][..],             // a group
            &[0x00, 0x00][..],       // field number 0
            &[0x09, 1, 2, 3][..],    // fixed64 cut
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..],
        ] {
            let mut f = Fields::new(bad);
            assert_eq!(f.next(), Some(Err(Malformed)), "{bad:?}");
            assert_eq!(f.next(), None);
        }
        assert_eq!(Value::Varint(1).bytes(), Err(Malformed));
        assert_eq!(Value::Bytes(&[0xff]).str(), Err(Malformed));
        assert_eq!(Value::Bytes(b"x").varint(), Err(Malformed));
    }

    #[test]
    fn a_message_cut_anywhere_reads_as_prost_reads_it() {
        let w = pw::Workload {
            uid: "Kubernetes//Pod/ns/w-1".into(),
            name: "w-1".into(),
            namespace: "ns".into(),
            addresses: vec![vec![10, 0, 0, 1]],
            node: "n".into(),
            ..Default::default()
        };
        let b = w.encode_to_vec();
        for cut in 0..=b.len() {
            let ours = all(&b[..cut]).is_ok();
            let prosts = pw::Workload::decode(&b[..cut]).is_ok();
            // prost may still refuse what reads as fields (a string cut inside a
            // character); never the other way round.
            assert!(ours || !prosts, "cut at {cut}");
        }
    }
}
