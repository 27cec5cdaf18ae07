//! IP networks in CIDR notation, for the operator's probe-safety allow-list.

use std::net::IpAddr;
use std::str::FromStr;

/// An address block such as `127.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("expected ADDRESS/PREFIX")]
    Syntax,
    #[error("not an IP address")]
    Address,
    #[error("prefix must be 0..={max}")]
    Prefix { max: u8 },
    #[error("host bits are set (did you mean {0}?)")]
    HostBits(String),
}

impl Cidr {
    /// The block's first address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// Prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True when `ip` lies in the block (an IPv4 block never matches an IPv6 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask32(self.prefix) & u32::from(a) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask128(self.prefix) & u128::from(a) == u128::from(n),
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = s.split_once('/').ok_or(CidrError::Syntax)?;
        let network: IpAddr = addr.parse().map_err(|_| CidrError::Address)?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix.parse().map_err(|_| CidrError::Prefix { max })?;
        if prefix > max {
            return Err(CidrError::Prefix { max });
        }
        let masked = match network {
            IpAddr::V4(a) => IpAddr::from((u32::from(a) & mask32(prefix)).to_be_bytes()),
            IpAddr::V6(a) => IpAddr::from((u128::from(a) & mask128(prefix)).to_be_bytes()),
        };
        if masked != network {
            return Err(CidrError::HostBits(format!("{masked}/{prefix}")));
        }
        Ok(Cidr { network, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let c: Cidr = "127.0.0.0/8".parse().expect("cidr");
        assert!(c.contains("127.1.2.3".parse().expect("ip")));
        assert!(!c.contains("128.0.0.1".parse().expect("ip")));
        assert!(!c.contains("::1".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        let one: Cidr = "::1/128".parse().expect("cidr");
        assert!(one.contains("::1".parse().expect("ip")));
        assert!(!one.contains("::2".parse().expect("ip")));
        assert_eq!(one.to_string(), "::1/128");
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!("127.0.0.1".parse::<Cidr>(), Err(CidrError::Syntax));
        assert_eq!("x/8".parse::<Cidr>(), Err(CidrError::Address));
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix { max: 32 })
        );
        assert_eq!(
            "10.0.0.1/8".parse::<Cidr>(),
            Err(CidrError::HostBits("10.0.0.0/8".into()))
        );
    }
}
