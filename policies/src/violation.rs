//! What a validation found: [`Violation`]s (the document is refused) and [`Warning`]s (it is
//! accepted, but something about it deserves attention, such as a deprecated form).

use std::fmt;

use serde::Serialize;

/// One broken rule: where (`field`, a JSON-path-like address such as
/// `spec.default.backends[0].prometheus.port`) and what is wrong and what is accepted
/// (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Path of the offending field; empty for the document as a whole.
    pub field: String,
    /// What is wrong, and what would be accepted.
    pub message: String,
}

impl Violation {
    /// A violation at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// All violations of one resource (empty = valid).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Adds a violation at `field`.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation::new(field, message));
    }
    /// Whether a violation names `field` already.
    pub fn names(&self, field: &str) -> bool {
        self.0.iter().any(|v| v.field == field)
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// Something an accepted resource should change or know, e.g. a deprecated form (Kuma's
/// `kumactl` prints these as warnings too). `field` is empty for the resource as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Path of the field concerned, or empty.
    pub field: String,
    /// What to know or do.
    pub message: String,
}

impl Warning {
    /// A warning about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}
