//! `ip("...")` patterns: one address, a range `a-b` or a CIDR `a/n`, IPv4
//! or IPv6. A line or label value matches if any address inside it falls
//! in the pattern.

use std::net::IpAddr;

#[derive(Debug, Clone)]
pub(crate) struct IpPattern {
    lo: IpAddr,
    hi: IpAddr,
}

fn to_u128(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(v) => (false, u128::from(u32::from(v))),
        IpAddr::V6(v) => (true, u128::from(v)),
    }
}

impl IpPattern {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let (lo, hi): (IpAddr, IpAddr) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            if lo.is_ipv4() != hi.is_ipv4() || to_u128(lo).1 > to_u128(hi).1 {
                return None;
            }
            return Some(IpPattern { lo, hi });
        }
        if let Some((a, n)) = s.split_once('/') {
            let addr: IpAddr = a.parse().ok()?;
            let bits: u32 = n.parse().ok()?;
            let width = if addr.is_ipv4() { 32 } else { 128 };
            if bits > width {
                return None;
            }
            let (_, v) = to_u128(addr);
            let host_bits = width - bits;
            let mask: u128 = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            let (lo, hi) = (v & !mask, v | mask);
            let make = |x: u128| -> IpAddr {
                if addr.is_ipv4() {
                    IpAddr::V4(std::net::Ipv4Addr::from(x as u32))
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::from(x))
                }
            };
            return Some(IpPattern {
                lo: make(lo),
                hi: make(hi),
            });
        }
        let a: IpAddr = s.parse().ok()?;
        Some(IpPattern { lo: a, hi: a })
    }

    fn contains(&self, a: IpAddr) -> bool {
        let (v6, x) = to_u128(a);
        let (lv6, lo) = to_u128(self.lo);
        v6 == lv6 && lo <= x && x <= to_u128(self.hi).1
    }

    /// Whether any address in `text` is in the pattern.
    pub(crate) fn matches_in(&self, text: &str) -> bool {
        let is_ip_char = |c: char| c.is_ascii_hexdigit() || c == ':' || c == '.';
        for token in text
            .split(|c: char| !is_ip_char(c))
            .filter(|t| t.len() >= 2)
        {
            if let Ok(a) = token.parse::<IpAddr>() {
                if self.contains(a) {
                    return true;
                }
                continue;
            }
            // An IPv4 address glued to hex letters or colons.
            for part in token.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
                if let Ok(a) = part.trim_matches('.').parse::<IpAddr>()
                    && self.contains(a)
                {
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = IpPattern::parse("192.168.1.0/24").unwrap();
        assert!(p.matches_in("src 192.168.1.10 ok"));
        assert!(!p.matches_in("src 10.0.0.9 ok"));
        let r = IpPattern::parse("2001:db8::1-2001:db8::8").unwrap();
        assert!(r.matches_in("addr=2001:db8::3"));
        assert!(IpPattern::parse("bogus").is_none());
        assert!(IpPattern::parse("").is_none());
    }
}
