//! A tiny CIDR block type (`10.0.0.0/8`, `fd00::/64`, or a bare address) for policy matches.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP prefix. A bare address means a single host (/32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, String> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(format!("prefix length /{prefix} exceeds /{max}"));
        }
        Ok(Cidr { addr, prefix })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this block (addresses of the other family never do).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(u32::from(net).into(), u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// Compares the top `prefix` bits of two `bits`-wide numbers.
fn same_prefix(a: u128, b: u128, bits: u32, prefix: u8) -> bool {
    let shift = bits - u32::from(prefix);
    if shift >= bits {
        return true; // /0 matches everything
    }
    (a >> shift) == (b >> shift)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR block such as 10.0.0.0/8 or fd00::/64"))?;
        let prefix = match prefix {
            None => max_prefix(addr),
            Some(p) => p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?}: prefix length {p:?} is not a number"))?,
        };
        Cidr::new(addr, prefix).map_err(|e| format!("{s:?}: {e}"))
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Cidr, String> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn contains_by_prefix() {
        let c: Cidr = "10.244.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.244.3.4")));
        assert!(!c.contains(ip("10.245.0.1")));
        assert!(!c.contains(ip("::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        let host: Cidr = "fd00::5".parse().unwrap();
        assert_eq!(host.prefix(), 128);
        assert!(host.contains(ip("fd00::5")) && !host.contains(ip("fd00::6")));
        let v6: Cidr = "fd00::/64".parse().unwrap();
        assert!(v6.contains(ip("fd00::1:2")) && !v6.contains(ip("fd01::1")));
    }

    #[test]
    fn rejects_bad_blocks() {
        for bad in ["10.0.0.0/33", "fd00::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad} accepted");
        }
    }
}
