//! Whether a custom domain points at Slipway, asked of a real resolver.
//!
//! Each check builds a fresh resolver, so a record the user just fixed is seen by the next
//! check instead of an answer cached from the previous one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as ResolveError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use slipway_types::DomainName;

use crate::dns::DnsError;

/// The label checked under a wildcard domain: any name there must reach the app.
const WILDCARD_PROBE_LABEL: &str = "slipway-dns-check";
/// A CNAME chain longer than this is treated as a loop.
const MAX_CNAME_HOPS: usize = 8;
/// Per query; with two attempts a check of an unreachable server ends within seconds.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const QUERY_ATTEMPTS: usize = 2;

/// Checks domains against the system resolver or one given name server.
#[derive(Debug, Clone)]
pub struct DnsChecker {
    config: ResolverConfig,
}

/// The outcome of one check, with a short text for the `domains` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsCheck {
    /// `record` is what matched, e.g. `CNAME web.apps.test` or `A 203.0.113.7`.
    Verified { record: String },
    /// `found` says what is there instead, e.g. `no record` or `lookup failed: query refused`.
    Pending { found: String },
}

impl DnsChecker {
    /// Uses the name servers in /etc/resolv.conf, as the rest of the world would.
    pub fn system() -> Result<DnsChecker, DnsError> {
        let (config, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|error| DnsError::SystemResolver(error.to_string()))?;
        Ok(DnsChecker { config })
    }

    /// Asks only the server at `addr` (UDP, falling back to TCP).
    pub fn with_nameserver(addr: SocketAddr) -> DnsChecker {
        let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
            .into_iter()
            .map(|mut connection| {
                connection.port = addr.port();
                connection
            })
            .collect();
        let server = NameServerConfig::new(addr.ip(), true, connections);
        DnsChecker {
            config: ResolverConfig::from_name_servers(vec![server]),
        }
    }

    /// Verified when `domain` is a CNAME (possibly a chain) to `target` (`<app>.<apps_domain>`)
    /// or has A/AAAA records equal to `public_ip` only. A wildcard `*.x.y` is checked through
    /// one probe name under `x.y`.
    pub async fn check(&self, domain: &DomainName, target: &str, public_ip: IpAddr) -> DnsCheck {
        let mut options = ResolverOpts::default();
        options.timeout = QUERY_TIMEOUT;
        options.attempts = QUERY_ATTEMPTS;
        options.try_tcp_on_error = true;
        // /etc/hosts would answer `localhost` names without asking DNS at all.
        options.use_hosts_file = ResolveHosts::Never;
        let resolver =
            Resolver::builder_with_config(self.config.clone(), TokioRuntimeProvider::default())
                .with_options(options)
                .build();
        match resolver {
            Ok(resolver) => {
                let target = target.trim_end_matches('.').to_ascii_lowercase();
                check_with(&resolver, &probe_name(domain), &target, public_ip).await
            }
            Err(error) => DnsCheck::Pending {
                found: format!("lookup failed: {error}"),
            },
        }
    }
}

async fn check_with(
    resolver: &TokioResolver,
    probe: &str,
    target: &str,
    public_ip: IpAddr,
) -> DnsCheck {
    let failed = |reason: String| DnsCheck::Pending {
        found: format!("lookup failed: {reason}"),
    };
    let mut chain = Vec::new();
    let mut name = probe.to_owned();
    while chain.len() < MAX_CNAME_HOPS {
        match lookup(resolver, &name, RecordType::CNAME).await {
            Ok(data) => {
                let Some(next) = data.iter().find_map(|rdata| match rdata {
                    RData::CNAME(cname) => Some(canonical(&cname.0.to_ascii())),
                    _ => None,
                }) else {
                    break;
                };
                chain.push(next.clone());
                if next == target {
                    return verdict(&chain, &[], target, public_ip);
                }
                name = next;
            }
            Err(Lookup::NoSuchName) if chain.is_empty() => {
                return DnsCheck::Pending {
                    found: "no record".to_owned(),
                };
            }
            Err(Lookup::NoSuchName | Lookup::NoData) => break,
            Err(Lookup::Failed(reason)) => return failed(reason),
        }
    }
    let mut addresses = Vec::new();
    for record_type in [RecordType::A, RecordType::AAAA] {
        match lookup(resolver, &name, record_type).await {
            Ok(data) => addresses.extend(data.iter().filter_map(|rdata| match rdata {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })),
            Err(Lookup::NoSuchName | Lookup::NoData) => {}
            Err(Lookup::Failed(reason)) => return failed(reason),
        }
    }
    verdict(&chain, &addresses, target, public_ip)
}

enum Lookup {
    NoSuchName,
    NoData,
    Failed(String),
}

async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    record_type: RecordType,
) -> Result<Vec<RData>, Lookup> {
    match resolver.lookup(format!("{name}."), record_type).await {
        Ok(lookup) => Ok(lookup
            .answers()
            .iter()
            .filter(|record| record.record_type() == record_type)
            .map(|record| record.data.clone())
            .collect()),
        Err(NetError::Dns(ResolveError::NoRecordsFound(no_records))) => {
            if no_records.response_code == ResponseCode::NXDomain {
                Err(Lookup::NoSuchName)
            } else {
                Err(Lookup::NoData)
            }
        }
        Err(NetError::Dns(ResolveError::ResponseCode(code))) => {
            Err(Lookup::Failed(code.to_str().to_ascii_lowercase()))
        }
        Err(NetError::Timeout) => Err(Lookup::Failed("timed out".to_owned())),
        Err(error) => Err(Lookup::Failed(error.to_string())),
    }
}

/// Decides from what the lookups found: `chain` is the CNAME targets in order, `addresses`
/// those of the last name in the chain (or of the probe itself).
fn verdict(chain: &[String], addresses: &[IpAddr], target: &str, public_ip: IpAddr) -> DnsCheck {
    let cnames = (!chain.is_empty()).then(|| format!("CNAME {}", chain.join(" → ")));
    if chain.last().is_some_and(|last| last == target) {
        return DnsCheck::Verified {
            record: cnames.unwrap_or_default(),
        };
    }
    let same_family: Vec<IpAddr> = addresses
        .iter()
        .copied()
        .filter(|ip| ip.is_ipv4() == public_ip.is_ipv4())
        .collect();
    let found = [cnames, describe_addresses(addresses)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" → ");
    // Every address must be ours: with a stray one, visitors and ACME validation would
    // sometimes reach another host.
    if !same_family.is_empty() && same_family.iter().all(|ip| *ip == public_ip) {
        return DnsCheck::Verified { record: found };
    }
    let found = match (found.is_empty(), chain.is_empty(), addresses.is_empty()) {
        (true, _, _) => "no record".to_owned(),
        (false, false, true) => format!("{found} (expected {target})"),
        (false, true, false) => format!("{found} (expected {public_ip})"),
        (false, _, _) => format!("{found} (expected {target} or {public_ip})"),
    };
    DnsCheck::Pending { found }
}

/// `A 10.1.2.3, 10.1.2.4 AAAA ::1`, or nothing when there is no address.
fn describe_addresses(addresses: &[IpAddr]) -> Option<String> {
    let family = |v4: bool, label: &str| {
        let listed: Vec<String> = addresses
            .iter()
            .filter(|ip| ip.is_ipv4() == v4)
            .map(IpAddr::to_string)
            .collect();
        (!listed.is_empty()).then(|| format!("{label} {}", listed.join(", ")))
    };
    let described: Vec<String> = [family(true, "A"), family(false, "AAAA")]
        .into_iter()
        .flatten()
        .collect();
    (!described.is_empty()).then(|| described.join(" "))
}

/// The name actually queried: the domain, or a probe label under a wildcard's parent.
fn probe_name(domain: &DomainName) -> String {
    match domain.as_str().strip_prefix("*.") {
        Some(parent) => format!("{WILDCARD_PROBE_LABEL}.{parent}"),
        None => domain.as_str().to_owned(),
    }
}

fn canonical(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pending(found: &str) -> DnsCheck {
        DnsCheck::Pending {
            found: found.to_owned(),
        }
    }

    fn verified(record: &str) -> DnsCheck {
        DnsCheck::Verified {
            record: record.to_owned(),
        }
    }

    #[test]
    fn wildcards_are_probed_one_label_below() {
        let wildcard: DomainName = "*.shop.example.com".parse().unwrap();
        assert_eq!(probe_name(&wildcard), "slipway-dns-check.shop.example.com");
        let plain: DomainName = "www.example.com".parse().unwrap();
        assert_eq!(probe_name(&plain), "www.example.com");
    }

    #[test]
    fn a_cname_chain_ending_at_the_target_is_verified() {
        let target = "web.apps.test";
        let direct = vec![target.to_owned()];
        assert_eq!(
            verdict(&direct, &[], target, PUBLIC),
            verified("CNAME web.apps.test")
        );
        let chain = vec!["edge.example.net".to_owned(), target.to_owned()];
        assert_eq!(
            verdict(&chain, &[], target, PUBLIC),
            verified("CNAME edge.example.net → web.apps.test")
        );
    }

    #[test]
    fn addresses_must_all_be_the_public_ip() {
        let target = "web.apps.test";
        assert_eq!(
            verdict(&[], &[PUBLIC], target, PUBLIC),
            verified("A 203.0.113.7")
        );
        assert_eq!(
            verdict(&[], &[PUBLIC, ip("2001:db8::1")], target, PUBLIC),
            verified("A 203.0.113.7 AAAA 2001:db8::1")
        );
        assert_eq!(
            verdict(&[], &[PUBLIC, ip("10.1.2.3")], target, PUBLIC),
            pending("A 203.0.113.7, 10.1.2.3 (expected 203.0.113.7)")
        );
        assert_eq!(
            verdict(&[], &[ip("2001:db8::1")], target, PUBLIC),
            pending("AAAA 2001:db8::1 (expected 203.0.113.7)")
        );
    }

    #[test]
    fn pending_says_what_was_found() {
        let target = "web.apps.test";
        assert_eq!(verdict(&[], &[], target, PUBLIC), pending("no record"));
        let elsewhere = vec!["other.example.net".to_owned()];
        assert_eq!(
            verdict(&elsewhere, &[], target, PUBLIC),
            pending("CNAME other.example.net (expected web.apps.test)")
        );
        assert_eq!(
            verdict(&elsewhere, &[ip("10.1.2.3")], target, PUBLIC),
            pending("CNAME other.example.net → A 10.1.2.3 (expected web.apps.test or 203.0.113.7)")
        );
        assert_eq!(
            verdict(&elsewhere, &[PUBLIC], target, PUBLIC),
            verified("CNAME other.example.net → A 203.0.113.7")
        );
    }
}
