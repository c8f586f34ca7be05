//! Prometheus exposition format parser (text 0.0.4 and OpenMetrics 1.0), zero-copy.
//!
//! Sources: Prometheus "Exposition formats" (text format 0.0.4) and the OpenMetrics 1.0
//! specification. Handles `# TYPE`/`# HELP`/`# UNIT`/`# EOF`, `name{}`, escaped label
//! values (`\\`, `\"`, `\n`), trailing commas, NaN/±Inf in any case (Envoy writes `nan`),
//! timestamps (milliseconds in 0.0.4, seconds in OpenMetrics; stored as milliseconds) and
//! OpenMetrics exemplars (dropped).
//!
//! Label sets are kept as the raw (still escaped) text between the braces, so re-encoding as
//! Prometheus text copies bytes; [`labels`] iterates them when a value must be looked at.
//! A malformed line is skipped and counted in [`ParseStats`]; it never fails the whole body.

use std::borrow::Cow;

/// Metric type of a family (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl MetricType {
    /// The keyword used in the Prometheus text format 0.0.4.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        }
    }
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Histogram => &["_bucket", "_sum", "_count", "_created"],
            MetricType::Summary => &["_sum", "_count", "_created"],
            MetricType::Counter => &["_total", "_created"],
            _ => &[],
        }
    }
}

/// Which exposition format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// Picks the format from a `Content-Type` header value.
    pub fn from_content_type(ct: Option<&str>) -> Self {
        match ct {
            Some(ct) if ct.trim_start().starts_with("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Full sample name (e.g. `foo_bucket`).
    pub name: &'a str,
    /// Raw label text between the braces, escapes kept, no trailing comma (may be empty).
    pub labels: &'a str,
    /// Value as written (re-encoded verbatim; validated by the parser).
    pub raw_value: &'a str,
    /// Timestamp in milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl Sample<'_> {
    /// The value as a float (parsed on demand: merging copies `raw_value` and never needs it).
    pub fn value(&self) -> f64 {
        parse_value(self.raw_value).unwrap_or(f64::NAN)
    }
}

/// A superset of a set of label names, as 64 bits (one per name hash): two sets that share no
/// bit share no name. Lets the merge skip looking for extra labels' names in the series of a
/// family that cannot have them (Envoy's families never do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LabelNames(u64);

impl LabelNames {
    /// Every name may be in the set (when the names are not known).
    pub const ANY: LabelNames = LabelNames(u64::MAX);

    /// Adds `name`.
    pub fn add(&mut self, name: &[u8]) {
        let (Some(&first), Some(&last)) = (name.first(), name.last()) else {
            return;
        };
        let h = (name.len() as u64).wrapping_mul(0x9E37_79B9) ^ u64::from(first) << 3 ^ u64::from(last) << 7;
        self.0 |= 1 << (h.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 58);
    }

    /// The set with `names`.
    pub fn of<'n>(names: impl IntoIterator<Item = &'n str>) -> Self {
        let mut s = LabelNames::default();
        for n in names {
            s.add(n.as_bytes());
        }
        s
    }

    /// Whether the two sets may have a name in common (false: they certainly have none).
    pub fn may_share(self, other: LabelNames) -> bool {
        self.0 & other.0 != 0
    }
}

/// A metric family: a `# TYPE` (or an untyped run of samples) and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family<'a> {
    /// Family name as it must appear on the 0.0.4 `# TYPE` line (OpenMetrics counters get
    /// their `_total` suffix back).
    pub name: Cow<'a, str>,
    pub kind: MetricType,
    /// Raw (escaped) help text.
    pub help: Option<&'a str>,
    pub samples: Vec<Sample<'a>>,
    /// The label names its samples use (a superset; [`LabelNames::ANY`] when not known).
    pub label_names: LabelNames,
}

/// One series of a histogram or a summary: its samples grouped by their labels other than
/// `le` (histogram buckets) or `quantile` (summary quantiles).
#[derive(Debug, Clone)]
pub struct Group<'s, 'a> {
    /// The first sample of the series (its raw labels carry the series' labels, plus `le` or
    /// `quantile` when it is a bucket or a quantile; its timestamp is the series').
    pub first: &'s Sample<'a>,
    /// `(bound, sample)`: bucket upper bounds (`le`) or quantiles, in input order.
    pub points: Vec<(f64, &'s Sample<'a>)>,
    /// The `_sum` sample.
    pub sum: Option<&'s Sample<'a>>,
    /// The `_count` sample.
    pub count: Option<&'s Sample<'a>>,
}

impl<'a> Family<'a> {
    /// The label that separates the points of one series: `le` for a histogram, `quantile`
    /// for a summary.
    pub fn point_label(&self) -> Option<&'static str> {
        match self.kind {
            MetricType::Histogram => Some("le"),
            MetricType::Summary => Some("quantile"),
            _ => None,
        }
    }

    /// The series of a histogram or a summary family, in the order they first appear (none for
    /// other types). A bucket or quantile whose bound does not parse is left out.
    pub fn groups(&self) -> Vec<Group<'_, 'a>> {
        let Some(point_label) = self.point_label() else {
            return Vec::new();
        };
        let base: &str = &self.name;
        let mut out: Vec<Group<'_, 'a>> = Vec::new();
        let mut index: std::collections::HashMap<Vec<(&'a str, &'a str)>, usize> = std::collections::HashMap::new();
        for s in &self.samples {
            let mut key: Vec<(&'a str, &'a str)> = Vec::new();
            let mut bound = None;
            for (k, v) in labels(s.labels) {
                if k == point_label {
                    bound = Some(v);
                } else {
                    key.push((k, v));
                }
            }
            key.sort_unstable();
            let i = *index.entry(key).or_insert_with(|| {
                out.push(Group {
                    first: s,
                    points: Vec::new(),
                    sum: None,
                    count: None,
                });
                out.len() - 1
            });
            let g = &mut out[i];
            match &s.name[base.len().min(s.name.len())..] {
                "_sum" => g.sum = Some(s),
                "_count" => g.count = Some(s),
                "_bucket" if self.kind == MetricType::Histogram => {
                    if let Some(b) = bound.and_then(parse_value) {
                        g.points.push((b, s));
                    }
                }
                "" if self.kind == MetricType::Summary => {
                    if let Some(q) = bound.and_then(parse_value) {
                        g.points.push((q, s));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// Counts of what the parser skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParseStats {
    /// Lines that could not be parsed.
    pub bad_lines: u64,
    /// OpenMetrics-only samples with no 0.0.4 equivalent (`_created`), dropped.
    pub dropped_samples: u64,
    /// Families skipped by [`parse_filtered`].
    pub skipped_families: u64,
    /// The first problem, with its 1-based line number.
    pub first_error: Option<String>,
}

impl ParseStats {
    fn bad(&mut self, line_no: usize, msg: &str, line: &str) {
        self.bad_lines += 1;
        if self.first_error.is_none() {
            let shown: String = line.chars().take(80).collect();
            self.first_error = Some(format!("line {line_no}: {msg}: {shown:?}"));
        }
    }
}

/// Byte classes of metric names (`[a-zA-Z_:][a-zA-Z0-9_:]*`) and label names
/// (`[a-zA-Z_][a-zA-Z0-9_]*`): bit 0 / 1 = may start / continue a metric name, bit 2 / 3 = may
/// start / continue a label name. One table load per byte (the parser's hottest loops).
static NAME_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' {
            t[b] = 0b1111;
        } else if c == b':' {
            t[b] = 0b0011;
        } else if c.is_ascii_digit() {
            t[b] = 0b1010;
        }
        b += 1;
    }
    t
};

fn is_name_start(b: u8) -> bool {
    NAME_BYTES[b as usize] & 1 != 0
}
fn is_name_char(b: u8) -> bool {
    NAME_BYTES[b as usize] & 2 != 0
}
fn is_label_start(b: u8) -> bool {
    NAME_BYTES[b as usize] & 4 != 0
}
fn is_label_char(b: u8) -> bool {
    NAME_BYTES[b as usize] & 8 != 0
}

/// The end of the name chars starting at `i`.
fn name_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_name_char(b[i]) {
        i += 1;
    }
    i
}

/// The name and type of a `# TYPE` line, from the words after `TYPE`. Errors: what is wrong.
fn type_of<'a>(parts: &mut impl Iterator<Item = &'a str>) -> Result<(&'a str, MetricType), &'static str> {
    let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
        return Err("TYPE line needs a name and a type");
    };
    let b = name.as_bytes();
    if b.is_empty() || !is_name_start(b[0]) || name_end(b, 1) != b.len() {
        return Err("invalid metric name in TYPE line");
    }
    let kind = parse_type(kind.trim()).ok_or("unknown metric type")?;
    Ok((name, kind))
}

/// Whether `line` (without its newline) is a `# TYPE` line the text-format parser accepts:
/// such a line always starts a new family, whatever came before it (the streaming merge cuts
/// Envoy's body there).
pub fn starts_family(line: &str) -> bool {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let Some(rest) = line.trim_start_matches([' ', '\t']).strip_prefix('#') else {
        return false;
    };
    let mut parts = rest.trim_start_matches([' ', '\t']).splitn(3, [' ', '\t']);
    parts.next() == Some("TYPE") && type_of(&mut parts).is_ok()
}

fn parse_type(s: &str) -> Option<MetricType> {
    Some(match s {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "untyped" | "unknown" => MetricType::Untyped,
        // OpenMetrics types without a 0.0.4 equivalent
        "info" | "stateset" => MetricType::Gauge,
        "gaugehistogram" => MetricType::Untyped,
        _ => return None,
    })
}

/// Whether `s` is a valid sample value; integers (most of Envoy's output) take a fast path.
pub fn is_valid_value(s: &str) -> bool {
    let b = s.as_bytes();
    if !b.is_empty() && b.len() <= 18 && b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    parse_value(s).is_some()
}

/// Parses a float as Prometheus does (`NaN`, `+Inf`, `-Inf`, any case).
pub fn parse_value(s: &str) -> Option<f64> {
    match s.as_bytes().first()? {
        b'0'..=b'9' | b'-' | b'+' | b'.' | b'n' | b'N' | b'i' | b'I' => {}
        _ => return None,
    }
    s.parse::<f64>().ok()
}

/// Scans a label set starting after `{`; returns the raw inner text (trailing comma and
/// spaces removed) and the index just past `}`.
fn scan_labels(b: &[u8], mut i: usize, names: &mut LabelNames) -> Result<(usize, usize), &'static str> {
    let mut end_content = i;
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            return Err("unterminated label set");
        }
        if b[i] == b'}' {
            return Ok((end_content, i + 1));
        }
        if !is_label_start(b[i]) {
            return Err("invalid label name");
        }
        let start = i;
        while i < b.len() && is_label_char(b[i]) {
            i += 1;
        }
        names.add(&b[start..i]);
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err("expected '=' after label name");
        }
        i += 1;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() || b[i] != b'"' {
            return Err("expected '\"' to start a label value");
        }
        i += 1;
        loop {
            match memchr::memchr2(b'"', b'\\', &b[i..]) {
                None => return Err("unterminated label value"),
                Some(off) => {
                    i += off;
                    if b[i] == b'\\' {
                        if i + 1 >= b.len() {
                            return Err("unterminated label value");
                        }
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                }
            }
        }
        end_content = i;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i < b.len() && b[i] == b',' {
            i += 1;
        } else if i < b.len() && b[i] != b'}' {
            return Err("expected ',' or '}' after a label value");
        }
    }
}

/// Iterates `(name, raw escaped value)` pairs of a raw label text produced by this parser.
pub fn labels(raw: &str) -> LabelIter<'_> {
    LabelIter { s: raw, i: 0 }
}

/// Iterator returned by [`labels`].
pub struct LabelIter<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.s.as_bytes();
        let mut i = self.i;
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let ns = i;
        while i < b.len() && is_name_char(b[i]) {
            i += 1;
        }
        let name = &self.s[ns..i];
        let q = ns + memchr::memchr(b'"', &b[i..])? + (i - ns);
        let vs = q + 1;
        let mut j = vs;
        loop {
            let off = memchr::memchr2(b'"', b'\\', &b[j..])?;
            j += off;
            if b[j] == b'\\' {
                j += 2;
            } else {
                break;
            }
        }
        self.i = j + 1;
        Some((name, &self.s[vs..j]))
    }
}

/// Unescapes a raw label value (`\\`, `\"`, `\n`).
pub fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether sample `name` belongs to the family declared as `declared` with type `kind`: the
/// family name itself (not for histograms, and not for OpenMetrics counters, whose samples are
/// only `_total` and `_created`), or the name plus one of the type's suffixes.
fn is_member(name: &str, declared: &str, kind: MetricType, om: bool) -> bool {
    if name == declared {
        return !(kind == MetricType::Histogram || om && kind == MetricType::Counter);
    }
    kind.suffixes()
        .iter()
        .any(|s| name.len() == declared.len() + s.len() && name.starts_with(declared) && name.ends_with(s))
}

/// Parses `text` in `format` into families, in input order. Never fails: bad lines are
/// skipped and counted in `stats`.
pub fn parse<'a>(text: &'a str, format: Format, stats: &mut ParseStats) -> Vec<Family<'a>> {
    parse_filtered(text, format, stats, &|_| true)
}

/// Like [`parse`], but a family declared by `# TYPE` whose (0.0.4) name `keep` refuses is
/// skipped line by line without scanning its labels or values, and counted in
/// `stats.skipped_families`. Used for Envoy's stats with the profile filter: the families a
/// profile drops cost almost nothing.
pub fn parse_filtered<'a>(
    text: &'a str,
    format: Format,
    stats: &mut ParseStats,
    keep: &dyn Fn(&str) -> bool,
) -> Vec<Family<'a>> {
    let mut families: Vec<Family<'a>> = Vec::new();
    // the family name as declared by # TYPE (OpenMetrics counters: without `_total`)
    let mut declared: &str = "";
    // the family being skipped: its declared name and type
    let mut skipping: Option<(&'a str, MetricType)> = None;
    let mut pending_help: Option<(&'a str, &'a str)> = None;
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut line_no = 0;
    let om = format == Format::OpenMetrics;
    while pos < bytes.len() {
        line_no += 1;
        let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |o| pos + o);
        let mut line = &text[pos..end];
        pos = end + 1;
        if let Some(l) = line.strip_suffix('\r') {
            line = l;
        }
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('#') {
            let rest = rest.trim_start_matches([' ', '\t']);
            let mut parts = rest.splitn(3, [' ', '\t']);
            let keyword = parts.next().unwrap_or_default();
            match keyword {
                "TYPE" => {
                    let (name, kind) = match type_of(&mut parts) {
                        Ok(t) => t,
                        Err(reason) => {
                            stats.bad(line_no, reason, line);
                            continue;
                        }
                    };
                    declared = name;
                    let out_name: Cow<'a, str> = if om && kind == MetricType::Counter {
                        Cow::Owned(format!("{name}_total"))
                    } else {
                        Cow::Borrowed(name)
                    };
                    let help = pending_help.take().filter(|(n, _)| *n == name).map(|(_, h)| h);
                    if !keep(&out_name) {
                        skipping = Some((name, kind));
                        stats.skipped_families += 1;
                        continue;
                    }
                    skipping = None;
                    families.push(Family {
                        name: out_name,
                        kind,
                        help,
                        samples: Vec::new(),
                        label_names: LabelNames::default(),
                    });
                }
                "HELP" => {
                    if let Some(name) = parts.next() {
                        let help = parts.next().unwrap_or_default();
                        match families.last_mut() {
                            _ if skipping.is_some_and(|(d, _)| d == name) => {}
                            Some(f) if declared == name && f.help.is_none() => f.help = Some(help),
                            _ => pending_help = Some((name, help)),
                        }
                    }
                }
                "EOF" if om => break,
                _ => {} // comments, UNIT
            }
            continue;
        }
        // sample line
        let b = trimmed.as_bytes();
        if !is_name_start(b[0]) {
            stats.bad(line_no, "invalid metric name", line);
            continue;
        }
        // a sample of the declared family starts with its name (already checked): only the
        // rest of the name (a suffix such as `_bucket`) is scanned
        let from = if !declared.is_empty() && b.len() > declared.len() && b.starts_with(declared.as_bytes()) {
            declared.len()
        } else {
            1
        };
        let mut i = name_end(b, from);
        let name = &trimmed[..i];
        if let Some((d, kind)) = skipping {
            if is_member(name, d, kind, om) {
                continue;
            }
            skipping = None;
            declared = "";
        }
        let mut labels_raw = "";
        let mut names = LabelNames::default();
        if i < b.len() && b[i] == b'{' {
            match scan_labels(b, i + 1, &mut names) {
                Ok((content_end, next)) => {
                    labels_raw = &trimmed[i + 1..content_end];
                    i = next;
                }
                Err(e) => {
                    stats.bad(line_no, e, line);
                    continue;
                }
            }
        }
        let rest = trimmed[i..].trim_start_matches([' ', '\t']);
        if rest.len() == trimmed.len() - i && !rest.is_empty() {
            stats.bad(line_no, "expected a space before the value", line);
            continue;
        }
        let rest = if om {
            match rest.find(" #") {
                Some(x) => &rest[..x], // exemplar
                None => rest,
            }
        } else {
            rest
        };
        // value, then an optional timestamp, separated by spaces or tabs
        let rb = rest.as_bytes();
        let vend = rb.iter().position(|&c| c == b' ' || c == b'\t').unwrap_or(rb.len());
        let raw_value = &rest[..vend];
        if raw_value.is_empty() {
            stats.bad(line_no, "missing value", line);
            continue;
        }
        if !is_valid_value(raw_value) {
            stats.bad(line_no, "invalid value", line);
            continue;
        }
        let after = rest[vend..].trim_matches([' ', '\t']);
        let mut fields = after.split_ascii_whitespace();
        let timestamp_ms = match fields.next() {
            None => None,
            Some(ts) if om => match ts.parse::<f64>() {
                Ok(s) => Some((s * 1000.0).round() as i64),
                Err(_) => {
                    stats.bad(line_no, "invalid timestamp", line);
                    continue;
                }
            },
            Some(ts) => match ts.parse::<i64>() {
                Ok(t) => Some(t),
                Err(_) => {
                    stats.bad(line_no, "invalid timestamp", line);
                    continue;
                }
            },
        };
        if fields.next().is_some() {
            stats.bad(line_no, "unexpected text after the timestamp", line);
            continue;
        }
        // which family does this sample belong to?
        let belongs = !declared.is_empty() && families.last().is_some_and(|f| is_member(name, declared, f.kind, om));
        if belongs {
            let f = families.last_mut().expect("checked");
            if om && name.ends_with("_created") && f.kind != MetricType::Gauge && f.kind != MetricType::Untyped {
                stats.dropped_samples += 1;
                continue;
            }
            f.samples.push(Sample {
                name,
                labels: labels_raw,
                raw_value,
                timestamp_ms,
            });
            f.label_names.0 |= names.0;
        } else {
            declared = "";
            let sample = Sample {
                name,
                labels: labels_raw,
                raw_value,
                timestamp_ms,
            };
            match families.last_mut() {
                Some(f) if f.kind == MetricType::Untyped && f.name == name => {
                    f.samples.push(sample);
                    f.label_names.0 |= names.0;
                }
                _ => families.push(Family {
                    name: Cow::Borrowed(name),
                    kind: MetricType::Untyped,
                    help: None,
                    samples: vec![sample],
                    label_names: names,
                }),
            }
        }
    }
    families
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str, f: Format) -> (Vec<Family<'_>>, ParseStats) {
        let mut st = ParseStats::default();
        let fams = parse(text, f, &mut st);
        (fams, st)
    }

    #[test]
    fn a_bare_name_is_not_a_sample_of_an_openmetrics_counter_or_a_histogram() {
        // found by fuzzing: `s` under an OpenMetrics counter `s` was kept in family `s_total`,
        // so the 0.0.4 output had a sample outside its family and changed on the next round
        let (f, _) = p("# TYPE s counter\ns 1\n# EOF\n", Format::OpenMetrics);
        let counter = f
            .iter()
            .find(|fam| fam.kind == MetricType::Counter)
            .expect("the declared counter");
        assert_eq!(counter.name, "s_total");
        assert!(counter.samples.is_empty(), "{f:?}");
        assert!(
            f.iter()
                .any(|fam| fam.kind == MetricType::Untyped && fam.name == "s" && fam.samples.len() == 1)
        );
        let (f, _) = p("# TYPE s counter\ns_total 2\n# EOF\n", Format::OpenMetrics);
        assert_eq!((f.len(), f[0].samples[0].name), (1, "s_total"));
        let (f, _) = p("# TYPE h histogram\nh 1\nh_count 2\n", Format::Text);
        assert_eq!(f[0].name, "h");
        assert!(
            f.iter()
                .any(|fam| fam.kind == MetricType::Untyped && fam.samples[0].name == "h")
        );
        assert!(
            f.iter()
                .any(|fam| fam.kind == MetricType::Histogram && fam.samples.iter().all(|s| s.name == "h_count"))
        );
        // 0.0.4 counters keep their samples named like the family
        let (f, _) = p("# TYPE c_total counter\nc_total 1\n", Format::Text);
        assert_eq!(f[0].samples.len(), 1);
    }

    #[test]
    fn families_know_every_label_name_their_samples_use() {
        let text = "# TYPE a counter\na{x=\"1\",mesh=\"m\"} 1\na{y=\"2\"} 2\nb{zone=\"z\"} 3\n# TYPE c gauge\nc 4\n# TYPE d gauge\nd{bad} 5\n";
        let (f, st) = p(text, Format::Text);
        assert_eq!(st.bad_lines, 1);
        let names = |i: usize| f[i].label_names;
        for (i, n) in [(0, "x"), (0, "mesh"), (0, "y"), (1, "zone")] {
            assert!(names(i).may_share(LabelNames::of([n])), "family {i} must know {n}");
        }
        // no labels, or only a bad line: an empty set, which shares nothing
        assert_eq!(names(2), LabelNames::default());
        assert!(!names(2).may_share(LabelNames::of(["mesh", "zone"])));
        assert!(f.len() == 3 || f[3].label_names == LabelNames::default());
        assert!(LabelNames::ANY.may_share(LabelNames::of(["anything"])));
        // a TYPE line with an invalid name is a bad line, not a family
        let (f, st) = p("# TYPE a{ counter\na 1\n", Format::Text);
        assert_eq!((st.bad_lines, f.len(), f[0].kind), (1, 1, MetricType::Untyped));
    }

    #[test]
    fn envoy_style() {
        let text = "# TYPE envoy_cluster_upstream_rq_total counter\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\"} 3\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"b\",} 4\n# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n# TYPE envoy_x histogram\nenvoy_x_bucket{le=\"0.5\"} 1\nenvoy_x_bucket{le=\"+Inf\"} 2\nenvoy_x_sum{} 1.0000000000000002\nenvoy_x_count{} 2\n# TYPE envoy_s summary\nenvoy_s{quantile=\"0.5\"} nan\nenvoy_s_sum{} 0\n";
        let (f, st) = p(text, Format::Text);
        assert_eq!(st, ParseStats::default());
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].samples[1].labels, "envoy_cluster_name=\"b\"");
        assert_eq!(f[1].samples[0].labels, "");
        assert_eq!(f[2].kind, MetricType::Histogram);
        assert_eq!(f[2].samples.len(), 4);
        assert!(f[2].samples[1].value().is_infinite() || f[2].samples[1].labels.contains("+Inf"));
        assert!(f[3].samples[0].value().is_nan());
    }

    #[test]
    fn escapes_help_timestamps_and_bad_lines() {
        let text = "# HELP http_requests_total The total \\\\ number.\n# TYPE http_requests_total counter\nhttp_requests_total{method=\"po\\\"st\",path=\"a\\\\b\\nc\"} 1027 1395066363000\nbad line here\nhttp_requests_total{method=\"x\" 1\nmetric_without_type -Inf\nmetric_without_type{a=\"}\"} +inf\n";
        let (f, st) = p(text, Format::Text);
        assert_eq!(st.bad_lines, 2);
        assert!(st.first_error.as_deref().unwrap().starts_with("line 4"));
        assert_eq!(f[0].help, Some("The total \\\\ number."));
        let s = &f[0].samples[0];
        assert_eq!(s.timestamp_ms, Some(1395066363000));
        let l: Vec<_> = labels(s.labels).collect();
        assert_eq!(l, [("method", "po\\\"st"), ("path", "a\\\\b\\nc")]);
        assert_eq!(unescape(l[1].1), "a\\b\nc");
        assert_eq!(f[1].kind, MetricType::Untyped);
        assert_eq!(f[1].samples.len(), 2);
        assert_eq!(labels(f[1].samples[1].labels).next(), Some(("a", "}")));
    }

    #[test]
    fn filtered_families_are_skipped_without_scanning() {
        let text = "# TYPE a counter\na{x=\"1\"} 1\n# HELP b B.\n# TYPE b histogram\nb_bucket{le=\"1\"} 1\nb_bucket{le=\"+Inf\"} 2\nb_sum 3\nb_count 2\n# TYPE c gauge\nc 5\nd_untyped 7\n";
        let mut st = ParseStats::default();
        let f = parse_filtered(text, Format::Text, &mut st, &|n| n != "b");
        let names: Vec<&str> = f.iter().map(|f| f.name.as_ref()).collect();
        assert_eq!(names, ["a", "c", "d_untyped"]);
        assert_eq!((st.skipped_families, st.bad_lines), (1, 0));
        assert!(f.iter().all(|f| f.help.is_none()));
    }

    #[test]
    fn openmetrics_counters_created_exemplars_eof() {
        let text = "# TYPE foo counter\n# HELP foo Foo.\nfoo_total{a=\"1\"} 17.0 1520879607.789 # {trace_id=\"x\"} 1\nfoo_created{a=\"1\"} 1520430000.123\n# TYPE g gauge\n# UNIT g seconds\ng 1\n# EOF\nafter_eof 1\n";
        let (f, st) = p(text, Format::OpenMetrics);
        assert_eq!(st.bad_lines, 0);
        assert_eq!(st.dropped_samples, 1);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, "foo_total");
        assert_eq!(f[0].help, Some("Foo."));
        assert_eq!(f[0].samples[0].timestamp_ms, Some(1520879607789));
        assert_eq!(f[0].samples[0].raw_value, "17.0");
    }
}
