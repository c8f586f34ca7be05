//! Where the push receivers listen, and whether an OTLP endpoint is one of them.

use std::net::{IpAddr, SocketAddr};

/// Where the receivers listen, beyond what the policy says: the address (loopback unless the
/// plugin is told otherwise) and per-proxy port overrides for hosts that run several proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overrides {
    /// Address to listen on.
    pub ip: IpAddr,
    /// gRPC port instead of the policy's.
    pub grpc_port: Option<u16>,
    /// HTTP port instead of the policy's.
    pub http_port: Option<u16>,
}

/// Where the receivers listen for `m` (gRPC, HTTP), `None` when no policy enables them.
pub fn own_addresses(
    m: &meshmetric_policies::dpconfig::MetricsConfig,
    ov: &Overrides,
) -> Option<(SocketAddr, SocketAddr)> {
    m.otlp_receiver.map(|r| {
        (
            SocketAddr::new(ov.ip, ov.grpc_port.unwrap_or(r.grpc_port.get())),
            SocketAddr::new(ov.ip, ov.http_port.unwrap_or(r.http_port.get())),
        )
    })
}

/// Whether an OTLP `host:port` endpoint reaches one of `own` (the receivers of this plugin):
/// the same port on `localhost`, a loopback or unspecified address, or the receivers' own IP.
/// An exporter sending there would feed the plugin its own output.
pub fn is_own_endpoint(endpoint: &str, own: (SocketAddr, SocketAddr)) -> bool {
    let endpoint = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    let endpoint = endpoint.split('/').next().unwrap_or(endpoint);
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return false;
    };
    let Ok(port) = port.parse::<u16>() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    [own.0, own.1].iter().any(|a| {
        a.port() == port
            && (host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified() || ip == a.ip()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_endpoints_are_recognised() {
        let own = ("127.0.0.1:4317".parse().unwrap(), "127.0.0.1:4318".parse().unwrap());
        for e in [
            "127.0.0.1:4317",
            "localhost:4318",
            "[::1]:4317",
            "0.0.0.0:4317",
            "http://127.0.0.1:4318/v1",
        ] {
            assert!(is_own_endpoint(e, own), "{e}");
        }
        for e in ["127.0.0.1:14317", "10.0.0.5:4317", "collector:4317", "nonsense"] {
            assert!(!is_own_endpoint(e, own), "{e}");
        }
    }
}
