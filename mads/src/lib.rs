//! MADS (Monitoring Assignment Discovery Service) and Prometheus HTTP SD. Implemented by the
//! MADS issue; this crate is part of the workspace layout from the start.
