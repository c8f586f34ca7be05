//! OTLP export: one isolated exporter per OpenTelemetry backend.

pub mod producer;
