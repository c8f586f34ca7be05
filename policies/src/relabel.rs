//! Relabeling with Prometheus's `relabel_config` semantics (`model/relabel` of Prometheus):
//! validation of the rules with field paths, compilation once per config, and their
//! application to one series' labels. Pure: used by the plugin's hot path and by
//! `meshmetricctl relabel test`.
//!
//! Semantics, as Prometheus implements them:
//! - the source value is the values of `sourceLabels` (missing = empty) joined by `separator`
//!   (default `;`); `__name__` is the metric name;
//! - `regex` is RE2, fully anchored (`^(?:regex)$`), default `(.*)`; Go's `\d`, `\w`, `\s` and
//!   `\b` are ASCII-only, and so they are here;
//! - `replacement` (default `$1`) and a `targetLabel` with `$` expand the regex's groups (`$1`,
//!   `${1}`, `$name`; `$1x` names the group `1x`);
//! - writing an empty value removes the label; `replace` does nothing when the regex does not
//!   match or the expanded target is not a valid label name;
//! - rules run in order, each on the result of the previous; a dropped series stops there.

use std::borrow::Cow;
use std::sync::Arc;

use regex::Regex;

use crate::meshmetric::{RelabelAction, RelabelConfig};
use crate::violation::Violations;

/// The default regex.
pub const DEFAULT_REGEX: &str = "(.*)";
/// The default replacement.
pub const DEFAULT_REPLACEMENT: &str = "$1";
/// The default separator.
pub const DEFAULT_SEPARATOR: &str = ";";

/// Whether `s` is a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Prometheus's `relabelTarget`: a label name that may contain `$1`, `${1}`, `$name`.
fn is_relabel_target(s: &str) -> bool {
    // ^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$
    static RE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$").expect("static regex")
    });
    RE.is_match(s)
}

/// Translates Go's ASCII-only Perl classes (`\d`, `\w`, `\s`, `\b` and their negations) so the
/// Rust engine matches what Go's RE2 matches; everything else is the same RE2 syntax.
fn go_classes(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 16);
    let mut in_class = false;
    let mut chars = re.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let (outside, inside): (&str, &str) = match n {
                    'd' => ("[0-9]", "0-9"),
                    'D' => ("[^0-9]", ""),
                    'w' => ("[0-9A-Za-z_]", "0-9A-Za-z_"),
                    'W' => ("[^0-9A-Za-z_]", ""),
                    's' => (r"[\t\n\x0C\r ]", r"\t\n\x0C\r "),
                    'S' => (r"[^\t\n\x0C\r ]", ""),
                    'b' if !in_class => ("(?-u:\\b)", ""),
                    'B' if !in_class => ("(?-u:\\B)", ""),
                    _ => ("", ""),
                };
                if in_class && !inside.is_empty() {
                    out.push_str(inside);
                } else if !in_class && !outside.is_empty() {
                    out.push_str(outside);
                } else {
                    out.push('\\');
                    out.push(n);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // a leading `]` or `^]` is a literal, not the end
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // [:alpha:] inside a class
                out.push('[');
                for c in chars.by_ref() {
                    out.push(c);
                    if c == ']' {
                        break;
                    }
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

/// Compiles `regex` as Prometheus does: fully anchored RE2.
pub fn compile(regex: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{})$", go_classes(regex)))
}

/// The last line of a regex error (the caret and the reason).
fn regex_error(e: &regex::Error) -> String {
    e.to_string().lines().last().unwrap_or_default().trim().to_string()
}

/// Checks `rules` (`of` is the field path of the list, e.g. `spec.default.relabel`) with
/// Prometheus's rules and messages.
pub fn validate(rules: &[RelabelConfig], of: &str, v: &mut Violations) {
    for (i, r) in rules.iter().enumerate() {
        let f = format!("{of}[{i}]");
        let action = r.action.unwrap_or(RelabelAction::Replace);
        let a = action.as_str();
        use RelabelAction::*;
        if let Some(re) = &r.regex
            && let Err(e) = compile(re)
        {
            v.push(
                format!("{f}.regex"),
                format!("invalid regex {re:?}: {}", regex_error(&e)),
            );
        }
        let target = r.target_label.as_deref().unwrap_or("");
        for (j, l) in r.source_labels.iter().flatten().enumerate() {
            if !is_label_name(l) {
                v.push(
                    format!("{f}.sourceLabels[{j}]"),
                    format!("{l:?} is not a valid label name; accepted: [a-zA-Z_][a-zA-Z0-9_]*"),
                );
            }
        }
        if action == Hashmod && r.modulus.unwrap_or(0) == 0 {
            v.push(
                format!("{f}.modulus"),
                "relabel configuration for hashmod requires non-zero modulus",
            );
        }
        if matches!(
            action,
            Replace | Hashmod | Lowercase | Uppercase | Keepequal | Dropequal
        ) && target.is_empty()
        {
            v.push(
                format!("{f}.targetLabel"),
                format!("relabel configuration for {a} action requires 'targetLabel' value"),
            );
            continue;
        }
        let target_ok = match action {
            Replace if target.contains('$') => is_relabel_target(target),
            Replace | Hashmod | Lowercase | Uppercase | Keepequal | Dropequal => is_label_name(target),
            _ => true,
        };
        if !target_ok {
            v.push(
                format!("{f}.targetLabel"),
                format!("{target:?} is invalid 'targetLabel' for {a} action; accepted: [a-zA-Z_][a-zA-Z0-9_]*"),
            );
        }
        let replacement_set = r.replacement.as_deref().is_some_and(|x| x != DEFAULT_REPLACEMENT);
        if matches!(action, Lowercase | Uppercase | Keepequal | Dropequal) && replacement_set {
            v.push(
                format!("{f}.replacement"),
                format!("'replacement' can not be set for {a} action"),
            );
        }
        if action == Labelmap && !is_relabel_target(r.replacement.as_deref().unwrap_or(DEFAULT_REPLACEMENT)) {
            v.push(
                format!("{f}.replacement"),
                format!(
                    "{:?} is invalid 'replacement' for labelmap action",
                    r.replacement.as_deref().unwrap_or_default()
                ),
            );
        }
        let regex_set = r.regex.as_deref().is_some_and(|x| x != DEFAULT_REGEX);
        let separator_set = r.separator.as_deref().is_some_and(|x| x != DEFAULT_SEPARATOR);
        let modulus_set = r.modulus.is_some_and(|m| m != 0);
        if matches!(action, Keepequal | Dropequal) && (regex_set || modulus_set || separator_set || replacement_set) {
            v.push(
                f.clone(),
                format!("{a} action requires only 'sourceLabels' and 'targetLabel', and no other fields"),
            );
        }
        if matches!(action, Labeldrop | Labelkeep)
            && (r.source_labels.is_some() || !target.is_empty() || modulus_set || separator_set || replacement_set)
        {
            v.push(
                f.clone(),
                format!("{a} action requires only 'regex', and no other fields"),
            );
        }
    }
}

/// Why rules could not be compiled (validation refuses these first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("relabel[{index}]: {message}")]
pub struct RelabelError {
    /// The rule.
    pub index: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone)]
struct Rule {
    action: RelabelAction,
    source: Vec<String>,
    separator: String,
    regex: Regex,
    regex_is_default: bool,
    target: String,
    target_shared: Arc<str>,
    target_has_var: bool,
    replacement: String,
    replacement_shared: Arc<str>,
    replacement_has_var: bool,
    modulus: u64,
    /// The regex when it is a plain string (matching is then a comparison).
    literal: Option<String>,
    /// The only source label is `__name__`.
    name_only: bool,
}

/// Compiled rules, ready to run on many series.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// A label name or value while rules run: borrowed from the scraped text, shared with a
/// rule's remembered result, or owned. Cloning never copies the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Str<'a> {
    /// Borrowed.
    Borrowed(&'a str),
    /// Shared (a rule's result, computed once per distinct value).
    Shared(Arc<str>),
    /// Owned.
    Owned(String),
}

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Str::Borrowed(s) => s,
            Str::Shared(s) => s,
            Str::Owned(s) => s,
        }
    }
}

impl<'a> From<&'a str> for Str<'a> {
    fn from(s: &'a str) -> Self {
        Str::Borrowed(s)
    }
}

impl From<String> for Str<'_> {
    fn from(s: String) -> Self {
        Str::Owned(s)
    }
}

impl From<Arc<str>> for Str<'_> {
    fn from(s: Arc<str>) -> Self {
        Str::Shared(s)
    }
}

impl<'a> From<Cow<'a, str>> for Str<'a> {
    fn from(s: Cow<'a, str>) -> Self {
        match s {
            Cow::Borrowed(b) => Str::Borrowed(b),
            Cow::Owned(o) => Str::Owned(o),
        }
    }
}

/// One series' labels while rules run: `(name, value)` pairs, `__name__` among them, values
/// unescaped; borrowed from the scraped text where they are not rewritten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSet<'a> {
    pairs: Vec<(Str<'a>, Str<'a>)>,
}

impl<'a> LabelSet<'a> {
    /// An empty set with room for `n` labels.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            pairs: Vec::with_capacity(n),
        }
    }

    /// Removes every label, keeping the room (to reuse the set for the next series).
    pub fn clear(&mut self) {
        self.pairs.clear();
    }

    /// Adds a label (no check for an existing one: the caller adds distinct names).
    pub fn push(&mut self, name: impl Into<Str<'a>>, value: impl Into<Str<'a>>) {
        self.pairs.push((name.into(), value.into()));
    }

    /// The value of `name`, empty when missing (as Prometheus's `labels.Builder.Get`).
    pub fn get(&self, name: &str) -> &str {
        self.pairs.iter().find(|(n, _)| &**n == name).map_or("", |(_, v)| &**v)
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: impl Into<Str<'a>> + AsRef<str>, value: impl Into<Str<'a>> + AsRef<str>) {
        if value.as_ref().is_empty() {
            self.del(name.as_ref());
            return;
        }
        match self.pairs.iter_mut().find(|(n, _)| &**n == name.as_ref()) {
            Some(p) => p.1 = value.into(),
            None => self.pairs.push((name.into(), value.into())),
        }
    }

    /// Removes `name`.
    pub fn del(&mut self, name: &str) {
        self.pairs.retain(|(n, _)| &**n != name);
    }

    /// The labels, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (&**n, &**v))
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl AsRef<str> for Str<'_> {
    fn as_ref(&self) -> &str {
        self
    }
}

impl Rules {
    /// Compiles validated rules. Errors: a regex that does not compile.
    pub fn compile(cfgs: &[RelabelConfig]) -> Result<Self, RelabelError> {
        let mut rules = Vec::with_capacity(cfgs.len());
        for (index, c) in cfgs.iter().enumerate() {
            let re = c.regex.as_deref().unwrap_or(DEFAULT_REGEX);
            let regex = compile(re).map_err(|e| RelabelError {
                index,
                message: format!("invalid regex {re:?}: {}", regex_error(&e)),
            })?;
            let target = c.target_label.clone().unwrap_or_default();
            let replacement = c.replacement.clone().unwrap_or_else(|| DEFAULT_REPLACEMENT.into());
            rules.push(Rule {
                action: c.action.unwrap_or(RelabelAction::Replace),
                source: c.source_labels.clone().unwrap_or_default(),
                separator: c.separator.clone().unwrap_or_else(|| DEFAULT_SEPARATOR.into()),
                regex,
                regex_is_default: re == DEFAULT_REGEX,
                target_has_var: target.contains('$'),
                target_shared: Arc::from(target.as_str()),
                target,
                replacement_has_var: replacement.contains('$'),
                replacement_shared: Arc::from(replacement.as_str()),
                replacement,
                modulus: c.modulus.unwrap_or(0),
                literal: (regex::escape(re) == re).then(|| re.to_string()),
                name_only: c.source_labels.as_deref().is_some_and(|s| s == ["__name__"]),
            });
        }
        Ok(Self { rules })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// How many rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Runs the rules on `labels`; false when the series is dropped. For many series, use a
    /// [`Runner`] (it remembers what each rule computed for a value).
    pub fn process(&self, labels: &mut LabelSet<'_>) -> bool {
        self.runner().process(labels)
    }

    /// A runner for one batch of series (e.g. one collection).
    pub fn runner(&self) -> Runner<'_> {
        Runner {
            rules: self,
            memo: (0..self.rules.len()).map(|_| Memo::default()).collect(),
            scratch: String::new(),
        }
    }
}

/// Most values one rule remembers per runner.
const MEMO_CAPACITY: usize = 16_384;

/// What a rule computed for one source value (or label name).
#[derive(Debug, Clone)]
enum Outcome {
    /// A match (keep/drop, labeldrop/labelkeep).
    Matched(bool),
    /// `replace`: the target and the value to write (empty = remove), or nothing to do.
    Replace(Option<(Arc<str>, Arc<str>)>),
    /// `lowercase`/`uppercase`/`hashmod`: the value to write.
    Value(Arc<str>),
    /// `labelmap`: the new name, when the name matched.
    Map(Option<Arc<str>>),
}

/// One rule's remembered results, by value.
#[derive(Debug, Default)]
struct Memo {
    map: std::collections::HashMap<Box<str>, Outcome, foldhash::fast::RandomState>,
    /// Results per label name (label-name rules): few distinct names, searched linearly.
    names: Vec<(Box<str>, Outcome)>,
    /// The last value looked up and its result: series of one family come one after the
    /// other, so a rule on `__name__` mostly sees the value it saw last.
    last_key: String,
    last: Option<Outcome>,
}

/// Most label names searched linearly before the hash map takes over.
const NAMES_LINEAR: usize = 32;

impl Memo {
    /// `self[value]`, computing and remembering it with `f` on a miss (while there is room).
    fn get(&mut self, value: &str, f: impl FnOnce() -> Outcome) -> Outcome {
        if let Some(o) = self.map.get(value) {
            return o.clone();
        }
        let o = f();
        if self.map.len() < MEMO_CAPACITY {
            self.map.insert(value.into(), o.clone());
        }
        o
    }

    /// [`Memo::get`] behind a one-entry cache of the last value.
    fn get_last(&mut self, value: &str, f: impl FnOnce() -> Outcome) -> Outcome {
        if let Some(o) = &self.last
            && self.last_key == value
        {
            return o.clone();
        }
        let o = self.get(value, f);
        self.last_key.clear();
        self.last_key.push_str(value);
        self.last = Some(o.clone());
        o
    }

    /// [`Memo::get`] for label names: a linear search over the first few names.
    fn get_name(&mut self, name: &str, f: impl FnOnce() -> Outcome) -> Outcome {
        if let Some((_, o)) = self.names.iter().find(|(n, _)| &**n == name) {
            return o.clone();
        }
        if self.names.len() < NAMES_LINEAR {
            let o = f();
            self.names.push((name.into(), o.clone()));
            return o;
        }
        self.get(name, f)
    }
}

/// Runs [`Rules`] on many series, remembering each rule's result per distinct value (series of
/// one scrape repeat metric names and label values many times, so most regex evaluations are
/// lookups).
pub struct Runner<'r> {
    rules: &'r Rules,
    memo: Vec<Memo>,
    scratch: String,
}

impl Runner<'_> {
    /// Runs the rules on `labels`; false when the series is dropped.
    pub fn process(&mut self, labels: &mut LabelSet<'_>) -> bool {
        for (i, rule) in self.rules.rules.iter().enumerate() {
            if !rule.apply(labels, &mut self.memo[i], &mut self.scratch) {
                return false;
            }
        }
        true
    }
}

impl Rule {
    /// The source value, joined into `scratch` when there are several labels.
    fn source_value<'s>(&self, labels: &'s LabelSet<'_>, scratch: &'s mut String) -> &'s str {
        match self.source.as_slice() {
            [] => "",
            [one] => labels.get(one),
            many => {
                scratch.clear();
                for (i, l) in many.iter().enumerate() {
                    if i > 0 {
                        scratch.push_str(&self.separator);
                    }
                    scratch.push_str(labels.get(l));
                }
                scratch.as_str()
            }
        }
    }

    fn apply(&self, labels: &mut LabelSet<'_>, memo: &mut Memo, scratch: &mut String) -> bool {
        use RelabelAction::*;
        match self.action {
            Drop | Keep => {
                let val = self.source_value(labels, scratch);
                let m = if let Some(lit) = &self.literal {
                    lit == val
                } else {
                    let f = || Outcome::Matched(self.regex.is_match(val));
                    let o = if self.name_only {
                        memo.get_last(val, f)
                    } else {
                        memo.get(val, f)
                    };
                    let Outcome::Matched(m) = o else { unreachable!() };
                    m
                };
                if self.action == Drop { !m } else { m }
            }
            Dropequal | Keepequal => {
                let equal = labels.get(&self.target) == self.source_value(labels, scratch);
                equal == (self.action == Keepequal)
            }
            Replace => {
                let val = self.source_value(labels, scratch);
                if val.is_empty() && self.regex_is_default && !self.target_has_var && !self.replacement_has_var {
                    labels.set(
                        Str::Shared(self.target_shared.clone()),
                        Str::Shared(self.replacement_shared.clone()),
                    );
                    return true;
                }
                let Outcome::Replace(r) = memo.get(val, || {
                    Outcome::Replace(self.regex.captures(val).and_then(|caps| {
                        let mut target = String::new();
                        caps.expand(&self.target, &mut target);
                        if !is_label_name(&target) {
                            return None;
                        }
                        let mut res = String::new();
                        caps.expand(&self.replacement, &mut res);
                        Some((Arc::from(target), Arc::from(res)))
                    }))
                }) else {
                    unreachable!()
                };
                if let Some((target, res)) = r {
                    labels.set(Str::Shared(target), Str::Shared(res));
                }
                true
            }
            Lowercase | Uppercase | Hashmod => {
                let val = self.source_value(labels, scratch);
                let Outcome::Value(v) = memo.get(val, || {
                    Outcome::Value(Arc::from(match self.action {
                        Lowercase => val.to_lowercase(),
                        Uppercase => val.to_uppercase(),
                        _ => {
                            use md5::Digest;
                            let digest = md5::Md5::digest(val.as_bytes());
                            let mut last = [0u8; 8];
                            last.copy_from_slice(&digest[8..16]);
                            (u64::from_be_bytes(last) % self.modulus.max(1)).to_string()
                        }
                    }))
                }) else {
                    unreachable!()
                };
                labels.set(Str::Shared(self.target_shared.clone()), Str::Shared(v));
                true
            }
            Labelmap => {
                let mut mapped: Vec<(Arc<str>, String)> = Vec::new();
                for (n, v) in labels.iter() {
                    let Outcome::Map(new) = memo.get_name(n, || {
                        Outcome::Map(
                            self.regex
                                .is_match(n)
                                .then(|| Arc::from(self.regex.replace_all(n, self.replacement.as_str()).as_ref())),
                        )
                    }) else {
                        unreachable!()
                    };
                    if let Some(new) = new.filter(|x| is_label_name(x)) {
                        mapped.push((new, v.to_string()));
                    }
                }
                for (n, v) in mapped {
                    labels.set(Str::Shared(n), Str::Owned(v));
                }
                true
            }
            Labeldrop | Labelkeep => {
                let keep_matching = self.action == Labelkeep;
                labels.pairs.retain(|(n, _)| {
                    let Outcome::Matched(m) = memo.get_name(n, || Outcome::Matched(self.regex.is_match(n))) else {
                        unreachable!()
                    };
                    m == keep_matching
                });
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: RelabelAction) -> RelabelConfig {
        RelabelConfig {
            action: Some(action),
            ..Default::default()
        }
    }

    fn set(pairs: &[(&'static str, &'static str)]) -> LabelSet<'static> {
        let mut s = LabelSet::default();
        for (n, v) in pairs {
            s.push(*n, *v);
        }
        s
    }

    #[test]
    fn go_ascii_classes() {
        let r = compile(r"\d+").unwrap();
        assert!(r.is_match("123") && !r.is_match("١٢٣"));
        let r = compile(r"[\w.]+").unwrap();
        assert!(r.is_match("a_b.c") && !r.is_match("é"));
        assert!(compile(r"\\d").unwrap().is_match(r"\d"));
        assert!(compile("[]a]").unwrap().is_match("]"));
        assert!(compile("[[:alpha:]]+").unwrap().is_match("abc"));
        // anchored
        assert!(!compile("b").unwrap().is_match("abc"));
    }

    #[test]
    fn replace_expands_and_removes_on_empty() {
        let mut cfg = rule(RelabelAction::Replace);
        cfg.source_labels = Some(vec!["envoy_cluster_name".into()]);
        cfg.regex = Some("outbound_(.*)_(\\d+)".into());
        cfg.target_label = Some("upstream".into());
        cfg.replacement = Some("${1}:$2".into());
        let r = Rules::compile(&[cfg]).unwrap();
        let mut l = set(&[("__name__", "x"), ("envoy_cluster_name", "outbound_web_8080")]);
        assert!(r.process(&mut l));
        assert_eq!(l.get("upstream"), "web:8080");
        // no match: nothing happens
        let mut l = set(&[("__name__", "x"), ("envoy_cluster_name", "inbound")]);
        r.process(&mut l);
        assert_eq!(l.get("upstream"), "");
        // an empty replacement removes the target
        let mut cfg = rule(RelabelAction::Replace);
        cfg.source_labels = Some(vec!["a".into()]);
        cfg.target_label = Some("b".into());
        let r = Rules::compile(&[cfg]).unwrap();
        let mut l = set(&[("a", ""), ("b", "x")]);
        r.process(&mut l);
        assert_eq!(l.get("b"), "");
    }

    #[test]
    fn keep_drop_equal_hashmod_case_and_label_actions() {
        let mk = |action, src: &[&str], regex: Option<&str>, target: Option<&str>| RelabelConfig {
            action: Some(action),
            source_labels: (!src.is_empty()).then(|| src.iter().map(|s| s.to_string()).collect()),
            regex: regex.map(Into::into),
            target_label: target.map(Into::into),
            ..Default::default()
        };
        let base = || {
            set(&[
                ("__name__", "envoy_rq"),
                ("code", "200"),
                ("code2", "200"),
                ("svc", "Web"),
            ])
        };
        let run = |cfgs: Vec<RelabelConfig>| {
            let r = Rules::compile(&cfgs).unwrap();
            let mut l = base();
            r.process(&mut l).then_some(l)
        };
        use RelabelAction::*;
        assert!(run(vec![mk(Keep, &["code"], Some("2.."), None)]).is_some());
        assert!(run(vec![mk(Drop, &["code"], Some("2.."), None)]).is_none());
        assert!(run(vec![mk(Keepequal, &["code"], None, Some("code2"))]).is_some());
        assert!(run(vec![mk(Dropequal, &["code"], None, Some("code2"))]).is_none());
        let l = run(vec![mk(Lowercase, &["svc"], None, Some("svc_lower"))]).unwrap();
        assert_eq!(l.get("svc_lower"), "web");
        let l = run(vec![mk(Uppercase, &["svc"], None, Some("svc"))]).unwrap();
        assert_eq!(l.get("svc"), "WEB");
        let mut h = mk(Hashmod, &["svc"], None, Some("shard"));
        h.modulus = Some(8);
        let l = run(vec![h]).unwrap();
        assert!(l.get("shard").parse::<u64>().unwrap() < 8);
        let mut m = mk(Labelmap, &[], Some("code(.*)"), None);
        m.replacement = Some("status$1".into());
        let l = run(vec![m]).unwrap();
        assert_eq!((l.get("status"), l.get("status2")), ("200", "200"));
        let l = run(vec![mk(Labeldrop, &[], Some("code.*"), None)]).unwrap();
        assert_eq!(l.len(), 2);
        let l = run(vec![mk(Labelkeep, &[], Some("__name__|svc"), None)]).unwrap();
        assert_eq!(l.len(), 2);
        // a missing source label is empty; a keep on it drops the series
        assert!(run(vec![mk(Keep, &["nope"], Some(".+"), None)]).is_none());
    }

    #[test]
    fn validation_follows_prometheus() {
        let mut v = Violations::default();
        let bad = vec![
            RelabelConfig {
                regex: Some("(".into()),
                target_label: Some("x".into()),
                ..Default::default()
            },
            rule(RelabelAction::Replace),
            RelabelConfig {
                action: Some(RelabelAction::Hashmod),
                target_label: Some("s".into()),
                ..Default::default()
            },
            RelabelConfig {
                action: Some(RelabelAction::Labeldrop),
                source_labels: Some(vec!["a".into()]),
                ..Default::default()
            },
            RelabelConfig {
                action: Some(RelabelAction::Lowercase),
                target_label: Some("1bad".into()),
                ..Default::default()
            },
            RelabelConfig {
                action: Some(RelabelAction::Keepequal),
                target_label: Some("a".into()),
                regex: Some("x".into()),
                ..Default::default()
            },
        ];
        validate(&bad, "spec.default.relabel", &mut v);
        let fields: Vec<&str> = v.0.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.default.relabel[0].regex",
                "spec.default.relabel[1].targetLabel",
                "spec.default.relabel[2].modulus",
                "spec.default.relabel[3]",
                "spec.default.relabel[4].targetLabel",
                "spec.default.relabel[5]",
            ]
        );
    }
}
