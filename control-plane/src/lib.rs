//! meshmetric control plane: resource store, REST API, ADS server and Envoy resource
//! generation. The binaries (`meshmetric-cp`) only wire these together.

pub mod ads;
pub mod api;
pub mod files;
pub mod inspect;
pub mod mads;
pub mod persist;
pub mod store;
pub mod tls;
pub mod xds;
