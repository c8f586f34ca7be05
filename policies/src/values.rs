//! Typed scalar values of the resources, each parsed once where it enters (deserialization):
//! [`Duration`] (Go duration syntax), [`Port`] (1–65535) and [`UrlPath`] (an HTTP path,
//! normalised to start with `/`).
//!
//! A value that does not parse is a deserialization error carrying what is accepted; the
//! document decoder turns it into a violation at the field's path, together with every other
//! violation of the document.

use std::fmt;
use std::num::NonZeroU16;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest duration Go (and so Kuma) can represent: `i64::MAX` nanoseconds, ~292 years.
pub const MAX_DURATION_NANOS: u128 = i64::MAX as u128;

/// A duration written in Go's syntax (`time.ParseDuration`): a sequence of decimal numbers,
/// each with an optional fraction and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g.
/// `300ms`, `1.5h`, `1h30m`; `0` alone is zero. A sign is not accepted (no duration in these
/// resources can be negative).
///
/// The text is kept as written (it is what `GET` returns); the value is exact to the
/// nanosecond and at most [`MAX_DURATION_NANOS`], so arithmetic on it cannot overflow
/// `std::time::Duration`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Duration {
    text: String,
    value: std::time::Duration,
}

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not Go duration syntax.
    #[error("invalid duration {0:?}; accepted: a number with a unit (ns, us, ms, s, m, h), e.g. 30s, 1m, 1h30m")]
    Syntax(String),
    /// Larger than Go can represent.
    #[error("duration {0:?} is too large; accepted: at most 2562047h47m16.854775807s")]
    TooLarge(String),
}

impl Duration {
    /// Parses Go duration syntax. Errors: [`DurationError`].
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let syntax = || DurationError::Syntax(text.to_string());
        let too_large = || DurationError::TooLarge(text.to_string());
        if text == "0" {
            return Ok(Self {
                text: text.to_string(),
                value: std::time::Duration::ZERO,
            });
        }
        if text.is_empty() {
            return Err(syntax());
        }
        let mut total: u128 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let int_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            let (int_part, after) = rest.split_at(int_end);
            let (frac_part, after) = match after.strip_prefix('.') {
                Some(a) => {
                    let e = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                    a.split_at(e)
                }
                None => ("", after),
            };
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(syntax());
            }
            let unit_end = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, next) = after.split_at(unit_end);
            let scale: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(syntax()),
            };
            // integer part, checked: a long run of digits overflows long before u128 does
            let mut int: u128 = 0;
            for d in int_part.bytes() {
                int = int
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u128::from(d - b'0')))
                    .filter(|v| *v <= MAX_DURATION_NANOS)
                    .ok_or_else(too_large)?;
            }
            let mut component = int.checked_mul(scale).ok_or_else(too_large)?;
            // fraction: digits beyond nanosecond precision cannot change the value
            let mut frac_scale = scale;
            for d in frac_part.bytes() {
                frac_scale /= 10;
                if frac_scale == 0 {
                    break;
                }
                component += u128::from(d - b'0') * frac_scale;
            }
            total = total
                .checked_add(component)
                .filter(|t| *t <= MAX_DURATION_NANOS)
                .ok_or_else(too_large)?;
            rest = next;
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_large())?;
        let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| too_large())?;
        Ok(Self {
            text: text.to_string(),
            value: std::time::Duration::new(secs, nanos),
        })
    }

    /// A duration of whole seconds, written as Go writes it (`60s` → `1m0s`).
    pub fn from_secs(secs: u64) -> Self {
        let value = std::time::Duration::from_secs(secs.min(MAX_DURATION_NANOS as u64 / 1_000_000_000));
        Self {
            text: go_format(value),
            value,
        }
    }

    /// The value.
    pub fn get(&self) -> std::time::Duration {
        self.value
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.value.is_zero()
    }
}

/// Go's `Duration.String()` for whole seconds and above (`1h2m3s`, `1m0s`, `0s`).
fn go_format(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Go duration syntax: numbers with units ns, us, ms, s, m, h, e.g. 30s, 1m, 1h30m.",
            "pattern": "^(0|([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$"
        })
    }
}

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(NonZeroU16);

impl Port {
    /// `n` as a port; `None` for 0.
    pub const fn new(n: u16) -> Option<Self> {
        match NonZeroU16::new(n) {
            Some(p) => Some(Self(p)),
            None => None,
        }
    }
    /// The port number.
    pub const fn get(self) -> u16 {
        self.0.get()
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.get())
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port 1-65535")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Port, E> {
                u16::try_from(v)
                    .ok()
                    .and_then(Port::new)
                    .ok_or_else(|| E::custom(format!("port must be a valid (1-65535), got {v}")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Port, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("port must be a valid (1-65535), got {v}"))),
                }
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Port, E> {
                Err(E::custom(format!("port must be a whole number 1-65535, got {v}")))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Port {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Port".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "integer", "minimum": 1, "maximum": 65535})
    }
}

/// An HTTP path. A path written without the leading `/` (`metrics/prometheus`, accepted by
/// Kuma) is normalised to `/metrics/prometheus` when it is read. Whitespace and `#` are
/// refused: they cannot be sent in an HTTP request line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UrlPath(String);

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {path:?} contains {found:?}, which cannot be sent in an HTTP request; accepted: e.g. /metrics")]
pub struct PathError {
    /// The path.
    pub path: String,
    /// The character refused.
    pub found: char,
}

impl UrlPath {
    /// Parses and normalises a path. Errors: [`PathError`] for whitespace, control characters
    /// and `#`.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control() || *c == '#') {
            return Err(PathError {
                path: text.to_string(),
                found: c,
            });
        }
        if text.starts_with('/') {
            Ok(Self(text.to_string()))
        } else {
            Ok(Self(format!("/{text}")))
        }
    }
    /// The path, starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UrlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for UrlPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UrlPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for UrlPath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UrlPath".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "HTTP path; a missing leading / is added.",
            "pattern": "^[^\\s#]*$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> std::time::Duration {
        Duration::parse(s).unwrap().get()
    }

    #[test]
    fn go_duration_syntax() {
        assert_eq!(d("1m"), std::time::Duration::from_secs(60));
        assert_eq!(d("1h30m"), std::time::Duration::from_secs(5400));
        assert_eq!(d("250ms"), std::time::Duration::from_millis(250));
        assert_eq!(d("1.5h"), std::time::Duration::from_secs(5400));
        assert_eq!(d(".5s"), std::time::Duration::from_millis(500));
        assert_eq!(d("1µs"), std::time::Duration::from_micros(1));
        assert_eq!(d("0"), std::time::Duration::ZERO);
        assert_eq!(d("0s"), std::time::Duration::ZERO);
        assert_eq!(d("1.0000000009s"), std::time::Duration::from_secs(1));
        for bad in ["", "m", "1", "1x", "-1s", "+1s", "1s ", " 1s", ".s", "1..5s", "1e3s"] {
            assert!(matches!(Duration::parse(bad), Err(DurationError::Syntax(_))), "{bad:?}");
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        assert_eq!(d("2562047h47m16.854775807s").as_nanos(), MAX_DURATION_NANOS);
        for big in [
            "2562047h47m16.854775808s",
            "2562048h",
            "99999999999999999999h",
            "99999999999999999999999999999999999999999999ns",
            "9223372036854775807ns1ns",
            "1000000000000000000000000000000000000000000000000000000000000000000000000s",
        ] {
            assert!(
                matches!(Duration::parse(big), Err(DurationError::TooLarge(_))),
                "{big:?}"
            );
        }
    }

    #[test]
    fn text_is_kept_and_go_format_is_used_for_defaults() {
        assert_eq!(Duration::parse("60s").unwrap().to_string(), "60s");
        assert_eq!(Duration::from_secs(60).to_string(), "1m0s");
        assert_eq!(Duration::from_secs(3661).to_string(), "1h1m1s");
        assert_eq!(Duration::from_secs(0).to_string(), "0s");
    }

    #[test]
    fn ports() {
        let p: Port = serde_json::from_str("5670").unwrap();
        assert_eq!(p.get(), 5670);
        for bad in ["0", "65536", "95599", "-1", "1.5", "\"80\"", "99999999999999999999"] {
            assert!(serde_json::from_str::<Port>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_normalised() {
        assert_eq!(
            UrlPath::parse("metrics/prometheus").unwrap().as_str(),
            "/metrics/prometheus"
        );
        assert_eq!(UrlPath::parse("/metrics").unwrap().as_str(), "/metrics");
        assert_eq!(UrlPath::parse("").unwrap().as_str(), "/");
        assert!(UrlPath::parse("/a b").is_err());
        assert!(UrlPath::parse("/a#b").is_err());
    }
}
