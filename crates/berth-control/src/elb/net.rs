//! IPv4 networks: which addresses may be registered as targets, and the
//! `source-ip` conditions of rules.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, `a.b.c.d/n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    /// `10.213.0.0/16`, Berth's default task network.
    pub const BERTH_TASKS: Self = Self {
        network: 0x0AD5_0000,
        prefix: 16,
    };

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        (u32::from(ip) & mask) == self.network
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    /// Parses `a.b.c.d/n`; host bits must be zero (`10.0.0.1/16` is refused).
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an IPv4 CIDR block such as 10.213.0.0/16"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 CIDR block such as 10.213.0.0/16"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to 32"))?;
        let c = Self {
            network: u32::from(ip),
            prefix,
        };
        if !c.contains(ip) {
            return Err(format!(
                "{s:?} has host bits set; write the network address (e.g. 10.213.0.0/16)"
            ));
        }
        Ok(c)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contain() {
        let c: Ipv4Cidr = "10.213.0.0/16".parse().unwrap();
        assert!(c.contains("10.213.4.2".parse().unwrap()));
        assert!(!c.contains("10.214.0.1".parse().unwrap()));
        assert_eq!(c.to_string(), "10.213.0.0/16");
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let one: Ipv4Cidr = "127.0.0.1/32".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!("10.213.0.1/16".parse::<Ipv4Cidr>().is_err());
        assert!("10.213.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.213.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("::1/128".parse::<Ipv4Cidr>().is_err());
    }
}
