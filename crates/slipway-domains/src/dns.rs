//! The built-in authoritative DNS server (`--dns-listen`).
//!
//! The server keeps the desired DNS state (apps, custom domains, ACME TXT values) in memory and
//! re-renders every zone from it on each change, so a record that is gone from the state is gone
//! from DNS: there is no incremental patching to get wrong. Lookups, NXDOMAIN/NODATA with the SOA
//! in authority, wildcards and REFUSED outside our zones come from hickory-server's `Catalog`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, RecordSet, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use slipway_types::{AppName, DomainName};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// App and custom-domain answers: short enough that a moved app is followed within a minute.
const RECORD_TTL: u32 = 60;
/// ACME TXT values live for one validation; resolvers must not keep an old one.
const TXT_TTL: u32 = 5;
/// SOA and NS rarely change.
const ZONE_TTL: u32 = 3600;
/// SOA minimum, the negative-caching TTL: a name that did not exist a moment ago (an app just
/// created) must resolve soon after.
const NEGATIVE_TTL: u32 = 5;
/// A TCP client that sends nothing for this long is dropped.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Responses buffered per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// With port 0 the TCP listener must take the port the kernel gave the UDP socket; if that port
/// is busy for TCP, start over with a new UDP port this many times.
const BIND_ATTEMPTS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(
        "DNS zone `{0}` is invalid: use a host name such as apps.example.com (letters, digits and dashes in dot-separated labels)"
    )]
    InvalidZone(String),
    #[error("DNS zone `{0}` is listed twice (the apps domain is always served)")]
    DuplicateZone(String),
    #[error("cannot listen for DNS on {addr} (--dns-listen) over {protocol}: {source}")]
    Bind {
        addr: SocketAddr,
        protocol: &'static str,
        source: io::Error,
    },
    #[error("cannot read the system resolver configuration from /etc/resolv.conf: {0}")]
    SystemResolver(String),
}

/// What the server is authoritative for and what it answers with.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// `<app>.<apps_domain>` names are served from this zone (`localhost` by default).
    pub apps_domain: String,
    /// Zones the operator delegated to Slipway (`--dns-zones`), where custom domains get a CNAME.
    pub extra_zones: Vec<String>,
    /// The address apps are reached at (`--public-ip`): an A record for v4, AAAA for v6.
    pub public_ip: IpAddr,
}

/// A handle to the running server; clones share it.
#[derive(Clone)]
pub struct DnsServer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

struct Shared {
    apps_domain: String,
    /// `ns1.<apps_domain>`, the name server of every zone.
    name_server: Name,
    public_ip: IpAddr,
    /// Every served zone, the apps domain first.
    zones: Vec<ServedZone>,
    /// The desired records; the mutex also orders re-renders.
    state: Mutex<State>,
}

struct ServedZone {
    name: String,
    origin: Name,
    /// The SOA contact, `hostmaster.<zone>`.
    hostmaster: Name,
    handler: Arc<InMemoryZoneHandler>,
}

#[derive(Default)]
struct State {
    apps: BTreeSet<String>,
    /// Custom domain (canonical, maybe `*.`) → app name.
    custom_domains: BTreeMap<String, String>,
    /// Owner name → values.
    txt: BTreeMap<String, BTreeSet<String>>,
    /// SOA serial, bumped on each change so secondaries (if any) notice.
    serial: u32,
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (port 0 allowed: both on the same port) and serves until
    /// `shutdown` is cancelled.
    pub async fn start(
        addr: SocketAddr,
        config: DnsConfig,
        shutdown: CancellationToken,
    ) -> Result<DnsServer, DnsError> {
        Self::serve(DnsSockets::bind(addr).await?, config, shutdown).await
    }

    /// Serves on sockets bound beforehand, until `shutdown` is cancelled.
    pub async fn serve(
        sockets: DnsSockets,
        config: DnsConfig,
        shutdown: CancellationToken,
    ) -> Result<DnsServer, DnsError> {
        let apps_domain = zone_name(&config.apps_domain)?;
        let mut zone_names = vec![apps_domain.clone()];
        for zone in &config.extra_zones {
            let zone = zone_name(zone)?;
            if zone_names.contains(&zone) {
                return Err(DnsError::DuplicateZone(zone));
            }
            zone_names.push(zone);
        }

        let name_server = fqdn(&format!("ns1.{apps_domain}"))?;
        let mut catalog = Catalog::new();
        let mut zones = Vec::with_capacity(zone_names.len());
        for zone in zone_names {
            let origin = fqdn(&zone)?;
            let hostmaster = fqdn(&format!("hostmaster.{zone}"))?;
            let handler = Arc::new(InMemoryZoneHandler::empty(
                origin.clone(),
                ZoneType::Primary,
                AxfrPolicy::Deny,
            ));
            catalog.upsert(
                LowerName::new(&origin),
                vec![handler.clone() as Arc<dyn ZoneHandler>],
            );
            zones.push(ServedZone {
                name: zone,
                origin,
                hostmaster,
                handler,
            });
        }

        let shared = Arc::new(Shared {
            apps_domain,
            name_server,
            public_ip: config.public_ip,
            zones,
            state: Mutex::new(State::default()),
        });
        shared.apply(|_| {}).await;

        let DnsSockets {
            udp,
            tcp,
            local_addr,
        } = sockets;
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        tracing::info!(addr = %local_addr, "DNS server listening");
        tokio::spawn(async move {
            shutdown.cancelled().await;
            if let Err(error) = server.shutdown_gracefully().await {
                tracing::warn!(%error, "DNS server stopped with an error");
            }
        });

        Ok(DnsServer { shared, local_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replaces the set of apps that get `<app>.<apps_domain>`.
    pub async fn set_apps(&self, apps: &[AppName]) {
        let apps = apps.iter().map(|app| app.as_str().to_owned()).collect();
        self.shared.apply(|state| state.apps = apps).await;
    }

    /// Replaces the custom domains. Only names inside an extra zone are served (as a CNAME to
    /// `<app>.<apps_domain>`); the others are the operator's DNS provider's business.
    pub async fn set_custom_domains(&self, domains: &[(DomainName, AppName)]) {
        let domains = domains
            .iter()
            .map(|(domain, app)| (domain.as_str().to_owned(), app.as_str().to_owned()))
            .collect();
        self.shared
            .apply(|state| state.custom_domains = domains)
            .await;
    }

    /// Adds a TXT value at `name` (e.g. `_acme-challenge.apps.test`) beside any already there:
    /// a wildcard and its apex validate at the same name at once.
    pub async fn add_txt(&self, name: &str, value: &str) {
        let name = canonical(name);
        if self.shared.zone_for(&name).is_none() {
            tracing::warn!(%name, "TXT record outside every served DNS zone ignored");
            return;
        }
        self.shared
            .apply(|state| {
                state.txt.entry(name).or_default().insert(value.to_owned());
            })
            .await;
    }

    pub async fn remove_txt(&self, name: &str, value: &str) {
        let name = canonical(name);
        self.shared
            .apply(|state| {
                if let Some(values) = state.txt.get_mut(&name) {
                    values.remove(value);
                    if values.is_empty() {
                        state.txt.remove(&name);
                    }
                }
            })
            .await;
    }

    /// Whether `name` lies in a zone this server is authoritative for (DNS-01 possible there).
    pub fn is_authoritative_for(&self, name: &DomainName) -> bool {
        self.shared
            .zones
            .iter()
            .any(|zone| name.is_within(&zone.name))
    }
}

impl Shared {
    /// The most specific served zone holding `name`, as the catalog would pick it.
    fn zone_for(&self, name: &str) -> Option<&str> {
        most_specific_zone(self.zones.iter().map(|zone| zone.name.as_str()), name)
    }

    /// Changes the desired state and re-renders every zone from it.
    async fn apply(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().await;
        change(&mut state);
        state.serial = state.serial.wrapping_add(1);
        for zone in &self.zones {
            let rendered = self.render(zone, &state);
            *zone.handler.records_mut().await = rendered;
        }
    }

    /// Every record of `zone` for the current state.
    fn render(&self, zone: &ServedZone, state: &State) -> BTreeMap<RrKey, Arc<RecordSet>> {
        let mut records = ZoneRecords::default();
        let soa = SOA::new(
            self.name_server.clone(),
            zone.hostmaster.clone(),
            state.serial,
            3600,
            600,
            604_800,
            NEGATIVE_TTL,
        );
        records.insert(&zone.origin, ZONE_TTL, RData::SOA(soa));
        records.insert(
            &zone.origin,
            ZONE_TTL,
            RData::NS(NS(self.name_server.clone())),
        );

        let in_this_zone = |name: &str| self.zone_for(name) == Some(zone.name.as_str());
        if zone.name == self.apps_domain {
            records.insert(&zone.origin, RECORD_TTL, self.address());
            records.insert(&self.name_server, RECORD_TTL, self.address());
            for app in &state.apps {
                records.add(&format!("{app}.{}", zone.name), RECORD_TTL, self.address());
            }
        } else {
            for (domain, app) in &state.custom_domains {
                if !in_this_zone(domain) {
                    continue;
                }
                if *domain == zone.name {
                    // No CNAME beside the SOA and NS at a zone apex: answer with the address.
                    records.insert(&zone.origin, RECORD_TTL, self.address());
                } else if let Some(target) = dns_name(&format!("{app}.{}", self.apps_domain)) {
                    records.add(domain, RECORD_TTL, RData::CNAME(CNAME(target.clone())));
                    // The target's address too, which the zone's lookup chases into the
                    // answer, as an authoritative server for both names does: stub resolvers
                    // (Pebble's validator among them) need no second query.
                    if state.apps.contains(app) {
                        records.insert(&target, RECORD_TTL, self.address());
                    }
                }
            }
        }
        for (name, values) in &state.txt {
            if in_this_zone(name) {
                for value in values {
                    records.add(name, TXT_TTL, RData::TXT(TXT::new(vec![value.clone()])));
                }
            }
        }
        records.0
    }

    fn address(&self) -> RData {
        match self.public_ip {
            IpAddr::V4(ip) => RData::A(A(ip)),
            IpAddr::V6(ip) => RData::AAAA(AAAA(ip)),
        }
    }
}

#[derive(Default)]
struct ZoneRecords(BTreeMap<RrKey, Arc<RecordSet>>);

impl ZoneRecords {
    /// Adds a record at a name built from run-time input; one DNS cannot carry is left out.
    fn add(&mut self, owner: &str, ttl: u32, rdata: RData) {
        if let Some(owner) = dns_name(owner) {
            self.insert(&owner, ttl, rdata);
        }
    }

    fn insert(&mut self, owner: &Name, ttl: u32, rdata: RData) {
        let record_type = rdata.record_type();
        let set = self
            .0
            .entry(RrKey::new(LowerName::new(owner), record_type))
            .or_insert_with(|| Arc::new(RecordSet::with_ttl(owner.clone(), record_type, ttl)));
        Arc::make_mut(set).add_rdata(rdata);
    }
}

/// Binds UDP first, then TCP on the same address and port.
/// The UDP socket and TCP listener a [`DnsServer`] answers on, bound to the same address. They
/// exist apart from the server so that a restarting Slipway can hand them to its successor.
pub struct DnsSockets {
    udp: UdpSocket,
    tcp: TcpListener,
    local_addr: SocketAddr,
}

impl DnsSockets {
    /// Binds UDP and TCP on `addr` (port 0 allowed: both on the same port).
    pub async fn bind(addr: SocketAddr) -> Result<Self, DnsError> {
        let (udp, tcp) = bind(addr).await?;
        let local_addr = udp.local_addr().map_err(|source| DnsError::Bind {
            addr,
            protocol: "UDP",
            source,
        })?;
        Ok(Self {
            udp,
            tcp,
            local_addr,
        })
    }

    /// Takes sockets bound elsewhere (received from another process). Must be called inside a
    /// tokio runtime.
    pub fn from_std(udp: std::net::UdpSocket, tcp: std::net::TcpListener) -> io::Result<Self> {
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let local_addr = udp.local_addr()?;
        Ok(Self {
            udp: UdpSocket::from_std(udp)?,
            tcp: TcpListener::from_std(tcp)?,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn udp(&self) -> &UdpSocket {
        &self.udp
    }

    pub fn tcp(&self) -> &TcpListener {
        &self.tcp
    }
}

async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let bind_error = |protocol| {
        move |source| DnsError::Bind {
            addr,
            protocol,
            source,
        }
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let udp = UdpSocket::bind(addr).await.map_err(bind_error("UDP"))?;
        let udp_addr = udp.local_addr().map_err(bind_error("UDP"))?;
        match TcpListener::bind(udp_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error)
                if addr.port() == 0
                    && error.kind() == io::ErrorKind::AddrInUse
                    && attempts < BIND_ATTEMPTS =>
            {
                continue;
            }
            Err(source) => return Err(bind_error("TCP")(source)),
        }
    }
}

/// Validates a zone name given by the operator and returns it in canonical form. One label
/// (`localhost`) is allowed: it is the default apps domain.
fn zone_name(input: &str) -> Result<String, DnsError> {
    let zone = canonical(input);
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if zone.len() <= 253 && zone.split('.').all(valid_label) {
        Ok(zone)
    } else {
        Err(DnsError::InvalidZone(input.to_owned()))
    }
}

fn fqdn(zone: &str) -> Result<Name, DnsError> {
    Name::from_ascii(format!("{zone}.")).map_err(|_| DnsError::InvalidZone(zone.to_owned()))
}

/// `name` as an absolute DNS name, or `None` (logged) when DNS cannot carry it, e.g. a TXT
/// owner with a label longer than 63 characters.
fn dns_name(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{name}."))
        .inspect_err(
            |error| tracing::warn!(%name, %error, "name not usable in DNS, record left out"),
        )
        .ok()
}

fn canonical(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The longest zone that is `name` or a parent of it.
fn most_specific_zone<'a>(zones: impl Iterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    let name = name.trim_start_matches("*.");
    zones
        .filter(|zone| {
            name == *zone
                || name
                    .strip_suffix(zone)
                    .is_some_and(|prefix| prefix.ends_with('.'))
        })
        .max_by_key(|zone| zone.len())
}

#[cfg(test)]
mod tests {
    use hickory_server::proto::rr::RecordType;

    use super::*;

    #[test]
    fn zone_names_are_host_names_of_one_or_more_labels() {
        assert_eq!(zone_name("localhost").unwrap(), "localhost");
        assert_eq!(zone_name("Apps.Example.COM.").unwrap(), "apps.example.com");
        for bad in [
            "",
            "a..b",
            "-a.test",
            "a-.test",
            "*.apps.test",
            "under_score.test",
            "a b",
        ] {
            assert!(
                matches!(zone_name(bad), Err(DnsError::InvalidZone(input)) if input == bad),
                "{bad:?} was accepted"
            );
        }
        assert!(zone_name(&format!("{}.test", "a".repeat(64))).is_err());
    }

    #[test]
    fn names_belong_to_the_most_specific_zone() {
        let zones = ["example.com", "apps.example.com", "shop.example.com"];
        let zone = |name| most_specific_zone(zones.iter().copied(), name);
        assert_eq!(zone("www.example.com"), Some("example.com"));
        assert_eq!(zone("example.com"), Some("example.com"));
        assert_eq!(zone("web.apps.example.com"), Some("apps.example.com"));
        assert_eq!(zone("*.shop.example.com"), Some("shop.example.com"));
        assert_eq!(zone("notexample.com"), None);
        assert_eq!(zone("example.org"), None);
    }

    #[test]
    fn records_of_one_name_and_type_form_one_set() {
        let mut records = ZoneRecords::default();
        let owner = "_acme-challenge.apps.test";
        records.add(owner, TXT_TTL, RData::TXT(TXT::new(vec!["one".into()])));
        records.add(owner, TXT_TTL, RData::TXT(TXT::new(vec!["two".into()])));
        records.add(owner, TXT_TTL, RData::TXT(TXT::new(vec!["two".into()])));
        records.add(
            &"x".repeat(64),
            TXT_TTL,
            RData::TXT(TXT::new(vec!["left out".into()])),
        );
        let key = RrKey::new(LowerName::new(&fqdn(owner).unwrap()), RecordType::TXT);
        assert_eq!(records.0.len(), 1);
        assert_eq!(records.0[&key].records_count(), 2);
        assert_eq!(records.0[&key].ttl(), TXT_TTL);
    }
}
