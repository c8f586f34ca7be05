//! Filtering, merging and encoding: Envoy stats (filtered by profiles) + application metrics
//! + extra labels → one Prometheus text 0.0.4 body.
//!
//! - Envoy families are kept per [`FamilyFilter::keep_family`]; when Basic is the broadest
//!   profile, series whose `envoy_cluster_name`, `envoy_http_conn_manager_prefix` or
//!   `envoy_listener_address` names an internal entity are dropped.
//! - Families with the same name from several sources are emitted once (one `# TYPE`),
//!   samples concatenated; a family whose type differs from the first one seen is dropped
//!   and counted (Prometheus would reject the whole scrape otherwise).
//! - Extra labels (names sanitised to `[a-zA-Z0-9_]`, e.g. `kuma.workload` → `kuma_workload`)
//!   are appended to every series. A series that already has a label of that name keeps its
//!   value under `exported_<name>` (`exported_exported_<name>` when that is taken too), as
//!   Prometheus does with `honor_labels: false`; nothing is overwritten silently, no rename
//!   creates a duplicate name, and each rename is counted.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;

use meshmetric_policies::profiles::{FamilyFilter, INTERNAL_LABELS, is_internal_name};

use meshmetric_policies::relabel::{LabelSet, Rules, Runner};

use crate::parse::{Family, LabelNames, MetricType, Sample, labels, unescape};

/// Extra labels, pre-rendered once per config.
#[derive(Debug, Clone, Default)]
pub struct ExtraLabels {
    names: Vec<String>,
    /// `names` as a [`LabelNames`] set.
    label_names: LabelNames,
    /// The values, unescaped, in the order of `names` (for relabeling).
    values: Vec<String>,
    /// `name="value",...` (escaped), no leading or trailing comma.
    rendered: String,
}

/// Sanitises a label name to `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn sanitize_label_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    if s.as_bytes().first().is_none_or(|b| b.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// Escapes a label value for the text format (`\`, `"`, newline).
pub fn escape_label_value(v: &str, out: &mut String) {
    // most values need no escaping: copy them whole
    if memchr::memchr3(b'\\', b'"', b'\n', v.as_bytes()).is_none() {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// [`escape_label_value`] into a new string.
pub fn escape_to_string(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    escape_label_value(v, &mut s);
    s
}

impl ExtraLabels {
    /// Builds from `(name, value)` pairs (names are sanitised; later duplicates ignored).
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut e = ExtraLabels::default();
        for (k, v) in pairs {
            let k = sanitize_label_name(k);
            if e.names.contains(&k) {
                continue;
            }
            if !e.rendered.is_empty() {
                e.rendered.push(',');
            }
            e.rendered.push_str(&k);
            e.rendered.push_str("=\"");
            escape_label_value(v, &mut e.rendered);
            e.rendered.push('"');
            e.label_names.add(k.as_bytes());
            e.names.push(k);
            e.values.push(v.to_string());
        }
        e
    }
}

/// Where a batch of families came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Envoy's stats: filtered by the profiles.
    Envoy,
    /// An application's metrics: families named like the plugin's own are dropped.
    Application,
    /// The plugin's own metrics ([`crate::selfmetrics`]).
    Own,
}

/// Prefix of the plugin's own metric names; applications may not use it.
pub const RESERVED_PREFIX: &str = "meshmetric_dp_";

/// Counters of what merging dropped or changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Envoy families the profiles dropped.
    pub families_filtered: u64,
    /// Application families named like the plugin's own metrics, dropped.
    pub families_reserved: u64,
    /// Envoy series naming internal entities, dropped (Basic).
    pub series_filtered_internal: u64,
    /// Families dropped because an earlier source had the name with another type.
    pub families_type_conflict: u64,
    /// Labels kept as `exported_<name>`.
    pub labels_renamed: u64,
    /// Series scraped (every source, before anything is dropped).
    pub series_in: u64,
    /// Series left after the profiles, the internal-entity filter and type conflicts (what
    /// relabeling sees).
    pub series_after_profile: u64,
    /// Series dropped by relabeling rules (`keep`, `drop`, `keepequal`, `dropequal`, or a rule
    /// that removed `__name__`).
    pub series_dropped_relabel: u64,
    /// Series written.
    pub series_out: u64,
}

impl MergeStats {
    /// Adds `o`'s counts.
    pub fn add(&mut self, o: &MergeStats) {
        self.families_filtered += o.families_filtered;
        self.families_reserved += o.families_reserved;
        self.series_filtered_internal += o.series_filtered_internal;
        self.families_type_conflict += o.families_type_conflict;
        self.labels_renamed += o.labels_renamed;
        self.series_in += o.series_in;
        self.series_after_profile += o.series_after_profile;
        self.series_dropped_relabel += o.series_dropped_relabel;
        self.series_out += o.series_out;
    }
}

struct OutFamily<'a, 'f> {
    name: &'f str,
    kind: MetricType,
    help: Option<&'a str>,
    /// Samples, with the index of the source they come from.
    parts: Vec<Part<'a, 'f>>,
}

/// The samples one source gives to a merged family.
struct Part<'a, 'f> {
    /// Index of the source.
    source: usize,
    samples: &'f [Sample<'a>],
    /// The label names of the source's family (a superset).
    label_names: LabelNames,
}

impl OutFamily<'_, '_> {
    /// Its series, every part together.
    fn series(&self) -> u64 {
        self.parts.iter().map(|p| p.samples.len() as u64).sum()
    }
}

/// The relabeling rules of one merge: per source (in the order of the sources; `None` = no
/// rules), applied to that source's series before the extra labels are added, and global ones,
/// applied to every series with its extra labels (as Prometheus's `metric_relabel_configs` see
/// the target's labels).
#[derive(Debug, Clone, Copy)]
pub struct Relabeling<'r> {
    /// Per source.
    pub per_source: &'r [Option<&'r Rules>],
    /// For every series.
    pub global: &'r Rules,
    /// Results remembered across merges ([`SeriesCache`]); without one, each merge runs the
    /// rules on every series.
    pub cache: Option<&'r std::sync::Mutex<SeriesCache>>,
}

impl Relabeling<'_> {
    fn is_empty(&self) -> bool {
        self.global.is_empty() && self.per_source.iter().all(|r| r.is_none_or(|r| r.is_empty()))
    }
}

static NO_RULES: std::sync::LazyLock<Rules> = std::sync::LazyLock::new(Rules::default);

/// Built once: building a substring finder per series cost more than the search.
static ENVOY_LABEL: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b",envoy_"));

fn is_internal_series(raw_labels: &str) -> bool {
    let b = raw_labels.as_bytes();
    if b.is_empty() || !b.starts_with(b"envoy_") && ENVOY_LABEL.find(b).is_none() {
        return false;
    }
    // fast reject without parsing: no label value at all starts like an internal name
    if !memchr::memchr_iter(b'"', b).any(|i| i > 0 && b[i - 1] == b'=' && is_internal_start(&b[i + 1..])) {
        return false;
    }
    labels(raw_labels).any(|(n, v)| INTERNAL_LABELS.contains(&n) && is_internal_name(v.as_bytes()))
}

/// Whether escaped label text (starting at a value, running to the end of the labels) could
/// begin an internal name ([`is_internal_name`]: `system_…`, `_…`, `ads_cluster`,
/// `access_log_sink`, `admin`); a superset check, confirmed by parsing.
fn is_internal_start(rest: &[u8]) -> bool {
    rest.starts_with(b"system_")
        || rest.starts_with(b"_")
        || rest.starts_with(b"ads_cluster\"")
        || rest.starts_with(b"access_log_sink\"")
        || rest.starts_with(b"admin\"")
}

/// New names for the labels of `pairs` that an extra label takes over, as Prometheus resolves
/// them with `honor_labels: false` (`resolveConflictingExposedLabels`): shortest name first,
/// `exported_` is prefixed again and again until the name is free among the series' labels,
/// the extra labels and the names already given, so a rename never creates a duplicate.
fn exported_names(pairs: &[(&str, &str)], extra: &[String]) -> Vec<Option<String>> {
    let mut renamed: Vec<Option<String>> = vec![None; pairs.len()];
    let mut conflicting: Vec<usize> = (0..pairs.len())
        .filter(|&i| extra.iter().any(|e| e == pairs[i].0))
        .collect();
    conflicting.sort_by_key(|&i| pairs[i].0.len());
    let mut given: Vec<String> = Vec::with_capacity(conflicting.len());
    for i in conflicting {
        let mut name = format!("exported_{}", pairs[i].0);
        // taken: a label of the series that stays as it is, an extra label, or a given name
        while pairs.iter().any(|(n, _)| *n == name && !extra.iter().any(|e| e == n))
            || extra.contains(&name)
            || given.contains(&name)
        {
            name.insert_str(0, "exported_");
        }
        given.push(name.clone());
        renamed[i] = Some(name);
    }
    renamed
}

/// What merging keeps of one family: `None` when the family is dropped (an application's
/// family named like the plugin's own, an Envoy family the profiles drop; counted), else its
/// samples — Envoy's without the series naming internal entities when Basic is the broadest
/// profile (counted).
fn kept<'f, 'a>(
    origin: Origin,
    f: &'f Family<'a>,
    filter: &FamilyFilter,
    stats: &mut MergeStats,
) -> Option<Cow<'f, [Sample<'a>]>> {
    if origin == Origin::Application && f.name.starts_with(RESERVED_PREFIX) {
        stats.families_reserved += 1;
        return None;
    }
    if origin != Origin::Envoy {
        return Some(Cow::Borrowed(&f.samples));
    }
    if !filter.keep_family(&f.name) {
        stats.families_filtered += 1;
        return None;
    }
    // one pass: samples before the first internal one are kept as they are
    let first_internal = if filter.drops_internal() {
        f.samples.iter().position(|s| is_internal_series(s.labels))
    } else {
        None
    };
    let Some(first) = first_internal else {
        return Some(Cow::Borrowed(&f.samples));
    };
    let mut samples: Vec<Sample<'a>> = f.samples[..first].to_vec();
    samples.extend(
        f.samples[first + 1..]
            .iter()
            .filter(|s| !is_internal_series(s.labels))
            .cloned(),
    );
    stats.series_filtered_internal += (f.samples.len() - samples.len()) as u64;
    Some(Cow::Owned(samples))
}

/// Adds one kept family of source `si` to the output families: a new family, a part of the
/// family of that name, or — when that family has another type — dropped (counted). A family
/// left with no sample is skipped (it does not fix the name's type).
fn add_part<'a, 'f>(
    order: &mut Vec<OutFamily<'a, 'f>>,
    index: &mut HashMap<&'f str, usize>,
    f: &'f Family<'a>,
    si: usize,
    samples: &'f [Sample<'a>],
    stats: &mut MergeStats,
) {
    if samples.is_empty() {
        return;
    }
    match index.get(f.name.as_ref()) {
        Some(&i) => {
            if order[i].kind != f.kind {
                stats.families_type_conflict += 1;
                return;
            }
            order[i].parts.push(Part {
                source: si,
                samples,
                label_names: f.label_names,
            });
        }
        None => {
            index.insert(f.name.as_ref(), order.len());
            order.push(OutFamily {
                name: f.name.as_ref(),
                kind: f.kind,
                help: f.help,
                parts: vec![Part {
                    source: si,
                    samples,
                    label_names: f.label_names,
                }],
            });
        }
    }
}

/// Merges `sources` (Envoy's first, then applications in config order) and encodes them as
/// Prometheus text 0.0.4 into `out`.
pub fn merge_encode<'a>(
    sources: &[(Origin, &[Family<'a>])],
    filter: &FamilyFilter,
    extra: &ExtraLabels,
    out: &mut Vec<u8>,
    stats: &mut MergeStats,
) {
    let none = Relabeling {
        per_source: &[],
        global: &NO_RULES,
        cache: None,
    };
    merge_encode_relabeled(sources, filter, extra, none, out, stats);
}

/// [`merge_encode`] with relabeling rules ([`Relabeling`]). A series whose `__name__` a rule
/// changes leaves its family: it is written under the family of its new name when there is
/// one, else in a family of its own of type `untyped` (Prometheus keeps no metadata for it
/// either).
pub fn merge_encode_relabeled<'a>(
    sources: &[(Origin, &[Family<'a>])],
    filter: &FamilyFilter,
    extra: &ExtraLabels,
    relabel: Relabeling<'_>,
    out: &mut Vec<u8>,
    stats: &mut MergeStats,
) {
    stats.series_in += sources
        .iter()
        .flat_map(|(_, fams)| fams.iter())
        .map(|f| f.samples.len() as u64)
        .sum::<u64>();
    // first pass: decide families and, for Envoy under Basic, drop internal series
    let mut kept_families: Vec<(usize, &Family<'a>, Cow<'_, [Sample<'a>]>)> = Vec::new();
    for (si, (origin, fams)) in sources.iter().enumerate() {
        for f in fams.iter() {
            if let Some(samples) = kept(*origin, f, filter, stats) {
                kept_families.push((si, f, samples));
            }
        }
    }
    let mut order: Vec<OutFamily<'a, '_>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (si, f, samples) in &kept_families {
        add_part(&mut order, &mut index, f, *si, samples, stats);
    }
    stats.series_after_profile += order.iter().map(OutFamily::series).sum::<u64>();
    if !relabel.is_empty() {
        encode_relabeled(&order, extra, relabel, out, stats);
        return;
    }
    let mut buf = itoa::Buffer::new();
    for f in &order {
        write_family(out, f, extra, stats, &mut buf);
    }
}

/// Writes one merged family without relabeling: `# HELP`, `# TYPE`, then every part's series
/// with the extra labels (an existing label of an extra label's name kept as
/// `exported_<name>`).
fn write_family(
    out: &mut Vec<u8>,
    f: &OutFamily<'_, '_>,
    extra: &ExtraLabels,
    stats: &mut MergeStats,
    buf: &mut itoa::Buffer,
) {
    write_header(out, f.name, f.kind, f.help);
    for part in &f.parts {
        // whether a series may have a label named like an extra label
        let may_conflict = part.label_names.may_share(extra.label_names);
        for s in part.samples {
            stats.series_out += 1;
            out.extend_from_slice(s.name.as_bytes());
            out.push(b'{');
            let conflict = may_conflict
                && !s.labels.is_empty()
                && labels(s.labels).any(|(n, _)| extra.names.iter().any(|e| e == n));
            if conflict {
                let pairs: Vec<(&str, &str)> = labels(s.labels).collect();
                let renamed = exported_names(&pairs, &extra.names);
                stats.labels_renamed += renamed.iter().filter(|r| r.is_some()).count() as u64;
                for (i, ((n, v), new)) in pairs.iter().zip(&renamed).enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(new.as_deref().unwrap_or(n).as_bytes());
                    out.extend_from_slice(b"=\"");
                    out.extend_from_slice(v.as_bytes());
                    out.push(b'"');
                }
            } else {
                out.extend_from_slice(s.labels.as_bytes());
            }
            if !extra.rendered.is_empty() {
                if !s.labels.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(extra.rendered.as_bytes());
            }
            out.extend_from_slice(b"} ");
            out.extend_from_slice(s.raw_value.as_bytes());
            if let Some(ts) = s.timestamp_ms {
                out.push(b' ');
                out.extend_from_slice(buf.format(ts).as_bytes());
            }
            out.push(b'\n');
        }
    }
}

/// [`merge_encode`] with Envoy's families arriving in pieces while its body is read, so
/// Envoy's body, its parsed samples and the output are never all alive at once. The other
/// sources (applications, pushed metrics) are complete before Envoy's first piece.
///
/// The output equals [`merge_encode`]'s for the same sources as long as Envoy lists each
/// family once (it does: one block per metric name and type). Each Envoy family is written as
/// it comes, followed by the other sources' families of that name (type conflicts dropped and
/// counted, as in the batch merge); families only the other sources have follow Envoy's, in
/// their order. An Envoy family whose name Envoy already listed with the same type cannot join
/// the block already written: it is dropped and counted with the type conflicts.
pub struct StreamMerge<'s, 'a> {
    filter: &'s FamilyFilter,
    extra: &'s ExtraLabels,
    /// The other sources' kept families: (source index, family, samples), in order.
    others: Vec<(usize, &'s Family<'a>, Cow<'s, [Sample<'a>]>)>,
    /// Their indices in `others` by name.
    by_name: HashMap<&'s str, Vec<usize>>,
    /// Taken into an Envoy family's block.
    consumed: Vec<bool>,
    /// Envoy's families written so far.
    envoy_names: std::collections::HashSet<String>,
    /// Counters of the other sources alone, and of what Envoy's families added.
    stats: MergeStats,
    envoy_stats: MergeStats,
    /// Output length before Envoy's first family (to take Envoy back out when its scrape fails
    /// half way).
    envoy_start: usize,
    buf: itoa::Buffer,
}

impl<'s, 'a> StreamMerge<'s, 'a> {
    /// A merge of Envoy's pieces with `others` (source indices start at 1: Envoy is 0), written
    /// to an output that is `out_len` bytes long now.
    pub fn new(
        others: &'s [(Origin, &'s [Family<'a>])],
        filter: &'s FamilyFilter,
        extra: &'s ExtraLabels,
        out_len: usize,
    ) -> Self {
        let mut stats = MergeStats::default();
        stats.series_in += others
            .iter()
            .flat_map(|(_, fams)| fams.iter())
            .map(|f| f.samples.len() as u64)
            .sum::<u64>();
        let mut kept_others = Vec::new();
        let mut by_name: HashMap<&'s str, Vec<usize>> = HashMap::new();
        for (i, (origin, fams)) in others.iter().enumerate() {
            for f in fams.iter() {
                if let Some(samples) = kept(*origin, f, filter, &mut stats) {
                    by_name.entry(f.name.as_ref()).or_default().push(kept_others.len());
                    kept_others.push((i + 1, f, samples));
                }
            }
        }
        Self {
            filter,
            extra,
            consumed: vec![false; kept_others.len()],
            others: kept_others,
            by_name,
            envoy_names: Default::default(),
            stats,
            envoy_stats: MergeStats::default(),
            envoy_start: out_len,
            buf: itoa::Buffer::new(),
        }
    }

    /// Writes a piece of Envoy's families (complete families, in Envoy's order).
    pub fn envoy(&mut self, fams: &[Family<'_>], out: &mut Vec<u8>) {
        let st = &mut self.envoy_stats;
        st.series_in += fams.iter().map(|f| f.samples.len() as u64).sum::<u64>();
        for f in fams {
            let Some(samples) = kept(Origin::Envoy, f, self.filter, st) else {
                continue;
            };
            if samples.is_empty() {
                continue;
            }
            if !self.envoy_names.insert(f.name.to_string()) {
                st.families_type_conflict += 1;
                continue;
            }
            let mut fam = OutFamily {
                name: f.name.as_ref(),
                kind: f.kind,
                help: f.help,
                parts: vec![Part {
                    source: 0,
                    samples: &samples[..],
                    label_names: f.label_names,
                }],
            };
            for &k in self.by_name.get(f.name.as_ref()).map_or(&[][..], Vec::as_slice) {
                let (si, of, other) = &self.others[k];
                if self.consumed[k] || other.is_empty() {
                    continue;
                }
                self.consumed[k] = true;
                if of.kind != f.kind {
                    st.families_type_conflict += 1;
                    continue;
                }
                fam.parts.push(Part {
                    source: *si,
                    samples: &other[..],
                    label_names: of.label_names,
                });
            }
            st.series_after_profile += fam.series();
            write_family(out, &fam, self.extra, st, &mut self.buf);
        }
    }

    /// Envoy's scrape failed after some of its pieces were written: they are taken out of the
    /// output and the merge goes on as if Envoy had not answered.
    pub fn envoy_failed(&mut self, out: &mut Vec<u8>) {
        out.truncate(self.envoy_start);
        self.consumed.iter_mut().for_each(|c| *c = false);
        self.envoy_names.clear();
        self.envoy_stats = MergeStats::default();
    }

    /// Writes the other sources' families Envoy did not have; returns the merge's counters.
    pub fn finish(mut self, out: &mut Vec<u8>) -> MergeStats {
        let mut order: Vec<OutFamily<'a, '_>> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (k, (si, f, samples)) in self.others.iter().enumerate() {
            if !self.consumed[k] {
                add_part(&mut order, &mut index, f, *si, samples, &mut self.stats);
            }
        }
        self.stats.series_after_profile += order.iter().map(OutFamily::series).sum::<u64>();
        for f in &order {
            write_family(out, f, self.extra, &mut self.stats, &mut self.buf);
        }
        self.stats.add(&self.envoy_stats);
        self.stats
    }
}

/// Envoy's text as it arrives, and where it can be cut so that parsing the pieces one by one
/// gives the families parsing the whole text gives: at a `# TYPE` line the parser accepts
/// ([`crate::parse::starts_family`]: it starts a new family whatever came before). `# HELP`
/// carries state to the next `# TYPE`, so no cut is made after the first line mentioning
/// `HELP` (Envoy writes none; other text is then merged as one piece). New text is searched
/// once, for line starts with `#` only; a cut missed only makes a piece longer.
#[derive(Debug, Default)]
pub struct FamilyCuts {
    /// What has arrived and was not taken yet.
    text: Vec<u8>,
    /// Bytes of `text` already searched (whole lines).
    scanned: usize,
    /// The last cut found (0: none).
    cut: usize,
    /// `HELP` was seen: no more cuts.
    help: bool,
}

/// `\n#`: a comment line starts after it.
static COMMENT_START: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\n#"));

static HELP: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"HELP"));

impl FamilyCuts {
    /// Room for `n` bytes before the first piece arrives.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            text: Vec::with_capacity(n),
            ..Default::default()
        }
    }

    /// Appends what arrived.
    pub fn push(&mut self, data: &[u8]) {
        self.text.extend_from_slice(data);
    }

    /// The complete families at the start of what is held, when they are at least `min` bytes
    /// (else empty); [`Self::take`] their length once they are merged.
    pub fn ready(&mut self, min: usize) -> &[u8] {
        self.scan();
        let cut = if self.cut >= min.max(1) { self.cut } else { 0 };
        &self.text[..cut]
    }

    /// Forgets the first `n` bytes (a piece [`Self::ready`] gave, merged).
    pub fn take(&mut self, n: usize) {
        self.text.drain(..n);
        self.scanned -= n;
        self.cut = self.cut.saturating_sub(n);
    }

    /// Everything held (at the end of the body).
    pub fn rest(&self) -> &[u8] {
        &self.text
    }

    /// Searches the whole lines not searched yet for cuts.
    fn scan(&mut self) {
        let text = &self.text;
        let Some(last_nl) = memchr::memrchr(b'\n', &text[self.scanned..]) else {
            return;
        };
        let start = self.scanned;
        let end = start + last_nl + 1;
        self.scanned = end;
        if self.help {
            return;
        }
        // cuts are only taken before the first HELP of the new text
        let limit = match HELP.find(&text[start..end]) {
            Some(p) => {
                self.help = true;
                start + p
            }
            None => end,
        };
        let mut cut = self.cut;
        let mut consider = |c: usize| {
            if c >= limit {
                return;
            }
            let line_end = c + memchr::memchr(b'\n', &text[c..end]).unwrap_or(end - c);
            if std::str::from_utf8(&text[c..line_end]).is_ok_and(crate::parse::starts_family) {
                cut = c;
            }
        };
        if text.get(start) == Some(&b'#') && (start == 0 || text[start - 1] == b'\n') {
            consider(start);
        }
        // the last newline of the region ends a line: a `#` after it is not searched yet
        for p in COMMENT_START.find_iter(&text[start..end - 1]) {
            consider(start + p + 1);
        }
        self.cut = cut;
    }
}

/// Relabeling results remembered across collections, one per series (as Prometheus's scrape
/// cache skips `metric_relabel_configs` for a series it has seen): the key is the series as
/// scraped (its source's rules, metric name and raw label text), the value the labels the rules
/// and extra labels give it, already rendered, or that the rules drop it. Only new series run
/// the rules.
///
/// Series are kept in the order they were first seen, keys and results each in one buffer: a
/// scrape lists its series in the same order every time, so a merge walks the cache from the
/// start comparing each series with the next entry (sequential memory, no hashing), and only
/// a series out of that order is looked up by hash.
///
/// A cache belongs to one set of rules and extra labels ([`crate::config::ActiveConfig`] holds
/// one per config); used with others it empties itself first. Entries not used for
/// [`SeriesCache::KEEP_FOR`] merges are forgotten; beyond [`SeriesCache::MAX_BYTES`] of keys and
/// results new series are not remembered (they run the rules every time).
#[derive(Default)]
pub struct SeriesCache {
    /// Keys: `name 0xFF raw-labels` of each entry.
    keys: Vec<u8>,
    /// Results: the rendered labels of each entry.
    labels: Vec<u8>,
    entries: Vec<Cached>,
    /// Hash of an entry's key → the entry (the key is compared on a hit).
    index: HashMap<u64, u32, foldhash::fast::RandomState>,
    hasher: foldhash::fast::RandomState,
    /// Addresses of the global rules and extra labels the entries were computed with.
    bound: (usize, usize),
    /// Merges run with this cache.
    tick: u32,
}

/// One series' relabeling result.
#[derive(Debug)]
struct Cached {
    /// Address of the source's rules (0: none).
    source: usize,
    hash: u64,
    /// The key in [`SeriesCache::keys`].
    key: (u32, u32),
    /// The labels in [`SeriesCache::labels`] (`name="escaped value",…`, no braces), extra
    /// labels included.
    labels: (u32, u32),
    /// The new metric name, when a rule changed it.
    name: Option<Box<str>>,
    /// The rules dropped the series.
    dropped: bool,
    /// Labels kept as `exported_<name>`.
    renamed: u32,
    /// The merge that used it last ([`SeriesCache::tick`]).
    used: u32,
}

impl std::fmt::Debug for SeriesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesCache")
            .field("series", &self.entries.len())
            .field("bytes", &(self.keys.len() + self.labels.len()))
            .finish()
    }
}

impl SeriesCache {
    /// Most bytes of keys and results remembered (Envoy's series take ~200 bytes each).
    pub const MAX_BYTES: usize = 256 << 20;
    /// Merges an entry survives without being used (a collection runs one to three merges).
    pub const KEEP_FOR: u32 = 16;

    /// Series remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn bind(&mut self, bound: (usize, usize)) {
        if self.bound != bound {
            self.keys.clear();
            self.labels.clear();
            self.entries.clear();
            self.index.clear();
            self.bound = bound;
        }
    }

    fn key_of(&self, e: &Cached) -> &[u8] {
        &self.keys[e.key.0 as usize..(e.key.0 + e.key.1) as usize]
    }

    fn labels_of(&self, e: usize) -> &[u8] {
        let (at, len) = self.entries[e].labels;
        &self.labels[at as usize..(at + len) as usize]
    }

    /// Whether entry `e` is the series `source`/`name`/`labels`.
    fn is(&self, e: usize, source: usize, name: &str, labels: &str) -> bool {
        let c = &self.entries[e];
        let k = self.key_of(c);
        c.source == source
            && k.len() == name.len() + 1 + labels.len()
            && &k[..name.len()] == name.as_bytes()
            && k[name.len()] == 0xff
            && &k[name.len() + 1..] == labels.as_bytes()
    }

    fn push(&mut self, source: usize, hash: u64, name: &str, labels: &str, r: Relabeled) -> usize {
        let key = (self.keys.len() as u32, (name.len() + 1 + labels.len()) as u32);
        self.keys.extend_from_slice(name.as_bytes());
        self.keys.push(0xff);
        self.keys.extend_from_slice(labels.as_bytes());
        let at = (self.labels.len() as u32, r.labels.len() as u32);
        self.labels.extend_from_slice(r.labels.as_bytes());
        self.entries.push(Cached {
            source,
            hash,
            key,
            labels: at,
            name: r.name,
            dropped: r.dropped,
            renamed: r.renamed,
            used: self.tick,
        });
        self.entries.len() - 1
    }

    /// Forgets entries not used for [`Self::KEEP_FOR`] merges.
    fn sweep(&mut self) {
        let tick = self.tick;
        let fresh = |e: &Cached| tick.wrapping_sub(e.used) < Self::KEEP_FOR;
        if self.entries.iter().all(fresh) {
            return;
        }
        let (mut keys, mut labels) = (Vec::new(), Vec::new());
        let mut entries = Vec::new();
        self.index.clear();
        for mut e in std::mem::take(&mut self.entries).into_iter().filter(|e| fresh(e)) {
            let k = self.key_of(&e);
            e.key.0 = keys.len() as u32;
            keys.extend_from_slice(k);
            let (at, len) = e.labels;
            e.labels.0 = labels.len() as u32;
            labels.extend_from_slice(&self.labels[at as usize..(at + len) as usize]);
            self.index.insert(e.hash, entries.len() as u32);
            entries.push(e);
        }
        (self.keys, self.labels, self.entries) = (keys, labels, entries);
    }
}

/// Where a series whose name a rule changed goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// Into a family of this merge.
    Family(usize),
    /// Into a family of its own (`untyped`), by index of first appearance.
    Renamed(usize),
}

/// What the rules made of one series.
struct Relabeled {
    labels: String,
    name: Option<Box<str>>,
    dropped: bool,
    renamed: u32,
}

/// Runs one series through its source's rules, the extra labels and the global rules.
fn relabel_series<'s>(
    ls: &mut LabelSet<'s>,
    s: &Sample<'s>,
    source_rules: Option<&mut Runner<'_>>,
    global: &mut Runner<'_>,
    extra: &'s ExtraLabels,
) -> Relabeled {
    let dropped = || Relabeled {
        labels: String::new(),
        name: None,
        dropped: true,
        renamed: 0,
    };
    ls.clear();
    ls.push("__name__", s.name);
    // an empty value is no label (as Prometheus reads the text)
    for (n, v) in labels(s.labels).filter(|(_, v)| !v.is_empty()) {
        ls.push(n, unescape(v));
    }
    if let Some(r) = source_rules
        && !r.process(ls)
    {
        return dropped();
    }
    let mut stats = MergeStats::default();
    add_extra(ls, extra, &mut stats);
    if !global.process(ls) {
        return dropped();
    }
    let name = ls.get("__name__");
    if name.is_empty() {
        return dropped();
    }
    let mut text = String::with_capacity(s.labels.len() + extra.rendered.len() + 16);
    for (n, v) in ls.iter().filter(|(n, _)| *n != "__name__") {
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(n);
        text.push_str("=\"");
        escape_label_value(v, &mut text);
        text.push('"');
    }
    Relabeled {
        labels: text,
        name: (name != s.name).then(|| Box::from(name)),
        dropped: false,
        renamed: stats.labels_renamed as u32,
    }
}

/// Writes `name{labels} value[ timestamp]\n`.
fn write_line(out: &mut Vec<u8>, name: &str, labels: &[u8], s: &Sample<'_>, ts: &mut itoa::Buffer) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'{');
    out.extend_from_slice(labels);
    out.extend_from_slice(b"} ");
    out.extend_from_slice(s.raw_value.as_bytes());
    if let Some(t) = s.timestamp_ms {
        out.push(b' ');
        out.extend_from_slice(ts.format(t).as_bytes());
    }
    out.push(b'\n');
}

fn write_header(out: &mut Vec<u8>, name: &str, kind: MetricType, help: Option<&str>) {
    if let Some(h) = help {
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(h.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_str().as_bytes());
    out.push(b'\n');
}

/// The relabeling path of [`merge_encode_relabeled`]. First pass: each series is found in the
/// [`SeriesCache`] (the next entry, else by hash); a series not there has its labels decoded
/// (`__name__` first), run through its source's rules, given the extra labels (an existing one
/// kept as `exported_<name>`, as on the fast path), run through the global rules and rendered,
/// and the result remembered. Second pass: every family is written once, its own series first,
/// then those a rule renamed into it; series renamed to a name no family has get a family of
/// their own, `untyped`.
fn encode_relabeled(
    order: &[OutFamily<'_, '_>],
    extra: &ExtraLabels,
    relabel: Relabeling<'_>,
    out: &mut Vec<u8>,
    stats: &mut MergeStats,
) {
    let mut local = SeriesCache::default();
    let mut guard = relabel.cache.map(|c| c.lock().unwrap_or_else(|p| p.into_inner()));
    let cache: &mut SeriesCache = guard.as_deref_mut().unwrap_or(&mut local);
    cache.bind((
        relabel.global as *const Rules as usize,
        extra as *const ExtraLabels as usize,
    ));
    cache.tick = cache.tick.wrapping_add(1);
    let tick = cache.tick;
    // one runner per rule list for the whole merge: each remembers its results per value
    let mut ls = LabelSet::with_capacity(16 + extra.names.len());
    let mut global = relabel.global.runner();
    let mut per_source: Vec<Option<Runner<'_>>> = relabel
        .per_source
        .iter()
        .map(|r| r.filter(|r| !r.is_empty()).map(Rules::runner))
        .collect();
    let source_ids: Vec<usize> = relabel
        .per_source
        .iter()
        .map(|r| r.filter(|r| !r.is_empty()).map_or(0, |r| r as *const Rules as usize))
        .collect();
    let total: usize = order.iter().flat_map(|f| f.parts.iter()).map(|p| p.samples.len()).sum();
    let mut picks: Vec<u32> = Vec::with_capacity(total);
    // series renamed out of their family: (target, family, part, sample, entry)
    let mut moved: Vec<(Target, usize, usize, usize, u32)> = Vec::new();
    let families: HashMap<&str, usize> = order.iter().enumerate().map(|(i, f)| (f.name, i)).collect();
    // names no family has, in order of first appearance
    let mut renamed: HashMap<String, usize> = HashMap::new();
    let mut renamed_families: Vec<usize> = Vec::new(); // an entry with each renamed family's name
    // where entries stop being remembered, when the cache is full: (entries, keys, labels)
    let mut full_at: Option<(usize, usize, usize)> = None;
    let mut cursor = 0usize;
    for (fi, f) in order.iter().enumerate() {
        for (pi, part) in f.parts.iter().enumerate() {
            let si = part.source;
            let id = source_ids.get(si).copied().unwrap_or(0);
            for (ii, s) in part.samples.iter().enumerate() {
                let e = if cursor < cache.entries.len() && cache.is(cursor, id, s.name, s.labels) {
                    cursor
                } else {
                    let hash = cache.hasher.hash_one((id, s.name, s.labels));
                    match cache.index.get(&hash) {
                        Some(&e) if cache.is(e as usize, id, s.name, s.labels) => e as usize,
                        _ => {
                            let runner = per_source.get_mut(si).and_then(Option::as_mut);
                            let r = relabel_series(&mut ls, s, runner, &mut global, extra);
                            if full_at.is_none() && cache.keys.len() + cache.labels.len() >= SeriesCache::MAX_BYTES {
                                full_at = Some((cache.entries.len(), cache.keys.len(), cache.labels.len()));
                            }
                            let e = cache.push(id, hash, s.name, s.labels, r);
                            if full_at.is_none() {
                                cache.index.insert(hash, e as u32);
                            }
                            e
                        }
                    }
                };
                cursor = e + 1;
                let c = &mut cache.entries[e];
                c.used = tick;
                if c.dropped {
                    stats.series_dropped_relabel += 1;
                    picks.push(u32::MAX);
                    continue;
                }
                stats.labels_renamed += u64::from(c.renamed);
                match &c.name {
                    None => picks.push(e as u32),
                    Some(name) => {
                        picks.push(u32::MAX);
                        let t = match (families.get(name.as_ref()), renamed.get(name.as_ref())) {
                            (Some(&i), _) => Target::Family(i),
                            (None, Some(&j)) => Target::Renamed(j),
                            (None, None) => {
                                renamed_families.push(e);
                                renamed.insert(name.to_string(), renamed_families.len() - 1);
                                Target::Renamed(renamed_families.len() - 1)
                            }
                        };
                        moved.push((t, fi, pi, ii, e as u32));
                    }
                }
            }
        }
    }
    moved.sort_by_key(|m| m.0);
    let mut ts = itoa::Buffer::new();
    let mut pick = picks.iter();
    let mut mv = 0;
    for (fi, f) in order.iter().enumerate() {
        let mut header = false;
        for part in &f.parts {
            for s in part.samples {
                let e = *pick.next().expect("one pick per series");
                if e == u32::MAX {
                    continue;
                }
                if !header {
                    write_header(out, f.name, f.kind, f.help);
                    header = true;
                }
                write_line(out, s.name, cache.labels_of(e as usize), s, &mut ts);
                stats.series_out += 1;
            }
        }
        while mv < moved.len() && moved[mv].0 == Target::Family(fi) {
            let (_, mfi, mpi, mii, e) = moved[mv];
            if !header {
                write_header(out, f.name, f.kind, f.help);
                header = true;
            }
            let s = &order[mfi].parts[mpi].samples[mii];
            let name = cache.entries[e as usize].name.as_deref().unwrap_or(s.name);
            write_line(out, name, cache.labels_of(e as usize), s, &mut ts);
            stats.series_out += 1;
            mv += 1;
        }
    }
    for (ri, &first) in renamed_families.iter().enumerate() {
        let name = cache.entries[first].name.as_deref().unwrap_or_default();
        write_header(out, name, MetricType::Untyped, None);
        while mv < moved.len() && moved[mv].0 == Target::Renamed(ri) {
            let (_, mfi, mpi, mii, e) = moved[mv];
            let s = &order[mfi].parts[mpi].samples[mii];
            write_line(out, name, cache.labels_of(e as usize), s, &mut ts);
            stats.series_out += 1;
            mv += 1;
        }
    }
    // series beyond the cache's size ran the rules for this merge only
    if let Some((entries, keys, labels)) = full_at {
        cache.entries.truncate(entries);
        cache.keys.truncate(keys);
        cache.labels.truncate(labels);
    }
    if cache.tick.is_multiple_of(SeriesCache::KEEP_FOR) {
        cache.sweep();
    }
}

/// Adds the extra labels to `ls`; a label of the series with an extra label's name is kept as
/// `exported_<name>` (see [`exported_names`]).
fn add_extra<'a>(ls: &mut LabelSet<'a>, extra: &'a ExtraLabels, stats: &mut MergeStats) {
    if extra.names.is_empty() {
        return;
    }
    if ls.iter().any(|(n, _)| extra.names.iter().any(|e| e == n)) {
        let pairs: Vec<(String, String)> = ls
            .iter()
            .filter(|(n, _)| *n != "__name__")
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let new_names = exported_names(&borrowed, &extra.names);
        for ((old, value), new) in pairs.iter().zip(new_names) {
            if let Some(new) = new {
                stats.labels_renamed += 1;
                ls.del(old);
                ls.set(new, value.clone());
            }
        }
    }
    for (n, v) in extra.names.iter().zip(&extra.values) {
        ls.set(n.as_str(), v.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Format, ParseStats, parse};
    use meshmetric_policies::meshmetric::{Profile, Profiles, RelabelAction, RelabelConfig, Selector};

    /// A rule renaming series whose name matches `regex` to `to` (`$1` expanded).
    fn rename(regex: &str, to: &str) -> RelabelConfig {
        RelabelConfig {
            source_labels: Some(vec!["__name__".into()]),
            regex: Some(regex.into()),
            target_label: Some("__name__".into()),
            replacement: Some(to.into()),
            ..Default::default()
        }
    }

    /// A rule dropping the series of the clusters `regex` matches.
    fn drop_clusters(regex: &str) -> RelabelConfig {
        RelabelConfig {
            source_labels: Some(vec!["envoy_cluster_name".into()]),
            regex: Some(regex.into()),
            action: Some(RelabelAction::Drop),
            ..Default::default()
        }
    }

    /// Profile All, nothing else.
    fn all_profiles() -> Profiles {
        Profiles {
            append_profiles: Some(vec![Profile {
                name: Some(meshmetric_policies::meshmetric::ProfileName::All),
            }]),
            ..Default::default()
        }
    }

    fn run(envoy: &str, app: &str, profiles: Option<Profiles>) -> (String, MergeStats) {
        let mut st = ParseStats::default();
        let e = parse(envoy, Format::Text, &mut st);
        let a = parse(app, Format::Text, &mut st);
        let filter = FamilyFilter::new(profiles.as_ref()).unwrap();
        let extra = ExtraLabels::new([("mesh", "default"), ("kuma.workload", "web\"1")]);
        let mut out = Vec::new();
        let mut ms = MergeStats::default();
        merge_encode(
            &[(Origin::Envoy, &e), (Origin::Application, &a)],
            &filter,
            &extra,
            &mut out,
            &mut ms,
        );
        (String::from_utf8(out).unwrap(), ms)
    }

    const ENVOY: &str = "# TYPE envoy_cluster_upstream_rq_total counter\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"localhost_8080\"} 3\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"ads_cluster\"} 9\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"_meshmetric_dp\"} 9\n# TYPE envoy_http_downstream_rq_total counter\nenvoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"admin\"} 4\n# TYPE envoy_cluster_version gauge\nenvoy_cluster_version{envoy_cluster_name=\"localhost_8080\"} 0\n# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n";
    const APP: &str = "# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\napp_requests_total{mesh=\"mine\",code=\"200\"} 5 1700000000000\n# TYPE envoy_server_live counter\nenvoy_server_live 2\n";

    #[test]
    fn basic_filters_internal_and_merges_apps() {
        let (out, ms) = run(ENVOY, APP, None);
        let expected = "# TYPE envoy_cluster_upstream_rq_total counter\n\
envoy_cluster_upstream_rq_total{envoy_cluster_name=\"localhost_8080\",mesh=\"default\",kuma_workload=\"web\\\"1\"} 3\n\
# TYPE envoy_server_live gauge\n\
envoy_server_live{mesh=\"default\",kuma_workload=\"web\\\"1\"} 1\n\
# HELP app_requests_total Requests.\n\
# TYPE app_requests_total counter\n\
app_requests_total{exported_mesh=\"mine\",code=\"200\",mesh=\"default\",kuma_workload=\"web\\\"1\"} 5 1700000000000\n";
        assert_eq!(out, expected);
        assert_eq!(ms.series_filtered_internal, 3);
        assert_eq!(ms.families_filtered, 1); // envoy_cluster_version is not in Basic
        assert_eq!(ms.families_type_conflict, 1);
        assert_eq!(ms.labels_renamed, 1);
    }

    #[test]
    fn renames_never_collide_as_in_prometheus() {
        let app = "# TYPE a gauge\na{mesh=\"m1\",exported_mesh=\"m2\",exported_exported_mesh=\"m3\",code=\"1\"} 1\n";
        let (out, ms) = run("", app, None);
        assert!(
            out.contains("a{exported_exported_exported_mesh=\"m1\",exported_mesh=\"m2\",exported_exported_mesh=\"m3\",code=\"1\",mesh=\"default\",kuma_workload=\"web\\\"1\"} 1"),
            "{out}"
        );
        assert_eq!(ms.labels_renamed, 1);
        // two conflicts: the shorter name is resolved first
        let renamed = exported_names(
            &[("kuma_workload", "w"), ("mesh", "m"), ("exported_mesh", "x")],
            &["mesh".into(), "kuma_workload".into()],
        );
        assert_eq!(
            renamed,
            [
                Some("exported_kuma_workload".to_string()),
                Some("exported_exported_mesh".to_string()),
                None
            ]
        );
    }

    #[test]
    fn relabeling_per_source_then_global_with_renamed_families() {
        let mut st = ParseStats::default();
        let e = parse(ENVOY, Format::Text, &mut st);
        let a = parse(APP, Format::Text, &mut st);
        let all = all_profiles();
        let filter = FamilyFilter::new(Some(&all)).unwrap();
        let extra = ExtraLabels::new([("mesh", "default")]);
        // the application's own rule renames its counter; the global ones drop a cluster and
        // move envoy_cluster_version onto envoy_server_live's family
        let app_rules = Rules::compile(&[rename("app_requests_total", "http_requests_total")]).unwrap();
        let global = Rules::compile(&[
            drop_clusters("ads_cluster|_meshmetric_dp"),
            rename("envoy_cluster_version", "envoy_server_live"),
        ])
        .unwrap();
        let per_source = [None, Some(&app_rules)];
        let mut out = Vec::new();
        let mut ms = MergeStats::default();
        merge_encode_relabeled(
            &[(Origin::Envoy, &e), (Origin::Application, &a)],
            &filter,
            &extra,
            Relabeling {
                per_source: &per_source,
                global: &global,
                cache: None,
            },
            &mut out,
            &mut ms,
        );
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("ads_cluster") && !out.contains("_meshmetric_dp"), "{out}");
        // renamed onto an existing family: under its TYPE line, which appears once
        assert_eq!(out.matches("# TYPE envoy_server_live").count(), 1, "{out}");
        assert!(
            out.contains("envoy_server_live{envoy_cluster_name=\"localhost_8080\",mesh=\"default\"} 0"),
            "{out}"
        );
        // renamed to a new name: a family of its own, untyped; the app's `mesh` kept as exported_mesh
        assert!(
            out.contains("# TYPE http_requests_total untyped\nhttp_requests_total{"),
            "{out}"
        );
        let line = out.lines().find(|l| l.starts_with("http_requests_total{")).unwrap();
        for part in [
            "exported_mesh=\"mine\"",
            "code=\"200\"",
            "mesh=\"default\"",
            "} 5 1700000000000",
        ] {
            assert!(line.contains(part), "{line}");
        }
        assert_eq!(ms.series_dropped_relabel, 2);
        assert_eq!(ms.series_out, ms.series_after_profile - 2);
        // the output is valid exposition: it parses back without errors
        let mut st = ParseStats::default();
        let back = parse(&out, Format::Text, &mut st);
        assert_eq!(st.bad_lines, 0, "{:?}", st.first_error);
        assert_eq!(back.iter().map(|f| f.samples.len() as u64).sum::<u64>(), ms.series_out);
    }

    #[test]
    fn remembered_results_give_the_same_output_and_counts_as_running_the_rules() {
        let mut st = ParseStats::default();
        let e = parse(ENVOY, Format::Text, &mut st);
        let a = parse(APP, Format::Text, &mut st);
        let filter = FamilyFilter::new(Some(&all_profiles())).unwrap();
        let extra = ExtraLabels::new([("mesh", "default")]);
        let app_rules = Rules::compile(&[rename("app_(.*)", "renamed_$1")]).unwrap();
        let global = Rules::compile(&[
            drop_clusters("ads_cluster"),
            rename("envoy_cluster_version", "envoy_server_live"),
            RelabelConfig {
                source_labels: Some(vec!["envoy_cluster_name".into()]),
                target_label: Some("shard".into()),
                modulus: Some(3),
                action: Some(RelabelAction::Hashmod),
                ..Default::default()
            },
        ])
        .unwrap();
        let per_source = [None, Some(&app_rules)];
        let sources = [(Origin::Envoy, e.as_slice()), (Origin::Application, a.as_slice())];
        let run = |global: &Rules, cache: Option<&std::sync::Mutex<SeriesCache>>| {
            let mut out = Vec::new();
            let mut ms = MergeStats::default();
            merge_encode_relabeled(
                &sources,
                &filter,
                &extra,
                Relabeling {
                    per_source: &per_source,
                    global,
                    cache,
                },
                &mut out,
                &mut ms,
            );
            (String::from_utf8(out).unwrap(), ms)
        };
        let (expected, expected_stats) = run(&global, None);
        assert!(
            expected.contains("# TYPE renamed_requests_total untyped\n"),
            "{expected}"
        );
        let cache = std::sync::Mutex::new(SeriesCache::default());
        for round in 0..3 * SeriesCache::KEEP_FOR {
            let (out, ms) = run(&global, Some(&cache));
            assert_eq!(out, expected, "round {round}");
            assert_eq!(ms, expected_stats, "round {round}");
        }
        // every series is remembered once (the dropped one too)
        assert_eq!(
            cache.lock().unwrap().len(),
            expected_stats.series_after_profile as usize
        );
        // other rules with the same cache: it starts over instead of answering for the old ones
        let none = Rules::compile(&[RelabelConfig {
            source_labels: Some(vec!["__name__".into()]),
            regex: Some(".+".into()),
            action: Some(RelabelAction::Keep),
            ..Default::default()
        }])
        .unwrap();
        let (fresh, _) = run(&none, None);
        let (reused, _) = run(&none, Some(&cache));
        assert_eq!(reused, fresh);
        assert!(reused.contains("ads_cluster"), "{reused}");
        // series no longer scraped are forgotten after KEEP_FOR merges
        let only_envoy = [(Origin::Envoy, e.as_slice())];
        let mut ms = MergeStats::default();
        for _ in 0..2 * SeriesCache::KEEP_FOR {
            ms = MergeStats::default();
            merge_encode_relabeled(
                &only_envoy,
                &filter,
                &extra,
                Relabeling {
                    per_source: &[],
                    global: &none,
                    cache: Some(&cache),
                },
                &mut Vec::new(),
                &mut ms,
            );
        }
        assert_eq!(cache.lock().unwrap().len(), ms.series_after_profile as usize);
        assert!(ms.series_after_profile < expected_stats.series_after_profile);
    }

    /// Feeds `envoy` to a [`StreamMerge`] in pieces cut at every `step` bytes, as the body
    /// arrives, and returns the output and counters.
    /// The batch merge of `envoy` and `app` after the same prefix [`streamed`] writes.
    fn batched(envoy: &str, app: &str, filter: &FamilyFilter, extra: &ExtraLabels) -> (Vec<u8>, MergeStats) {
        let mut st = ParseStats::default();
        let e = parse(envoy, Format::Text, &mut st);
        let a = parse(app, Format::Text, &mut st);
        let mut out = b"# prefix\n".to_vec();
        let mut stats = MergeStats::default();
        merge_encode(
            &[(Origin::Envoy, &e), (Origin::Application, &a)],
            filter,
            extra,
            &mut out,
            &mut stats,
        );
        (out, stats)
    }

    fn streamed(
        envoy: &str,
        app: &str,
        filter: &FamilyFilter,
        extra: &ExtraLabels,
        step: usize,
    ) -> (String, MergeStats) {
        let mut st = ParseStats::default();
        let a = parse(app, Format::Text, &mut st);
        let others = [(Origin::Application, a.as_slice())];
        let mut out = b"# prefix\n".to_vec();
        let mut m = StreamMerge::new(&others, filter, extra, out.len());
        let mut cuts = FamilyCuts::default();
        for piece in envoy.as_bytes().chunks(step.max(1)) {
            cuts.push(piece);
            let ready = cuts.ready(1);
            if !ready.is_empty() {
                let fams = parse(std::str::from_utf8(ready).unwrap(), Format::Text, &mut st);
                m.envoy(&fams, &mut out);
                let n = ready.len();
                cuts.take(n);
            }
        }
        let fams = parse(std::str::from_utf8(cuts.rest()).unwrap(), Format::Text, &mut st);
        m.envoy(&fams, &mut out);
        let stats = m.finish(&mut out);
        (String::from_utf8(out).unwrap(), stats)
    }

    #[test]
    fn cuts_fall_on_type_lines_only_and_stop_at_help() {
        let text = b"# TYPE a counter\na 1\n## TYPE b gauge\n# TYPE b\n# TYPE c gauge\nc 1\n# TYPE d gauge\n# HELP e x\n# TYPE e gauge\ne 1\n";
        let mut cuts = FamilyCuts::default();
        cuts.push(text);
        let cut = cuts.ready(1).len();
        let at = |needle: &str| text.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap();
        // `## TYPE` is a comment and `# TYPE b` has no type: the last cut before HELP is `d`
        assert_eq!(cut, at("# TYPE d"));
        // nothing arrives whole past a partial line
        let mut cuts = FamilyCuts::default();
        cuts.push(b"a 1\n# TYPE c gau");
        assert_eq!(cuts.ready(1).len(), 0);
        cuts.push(b"ge\nc 1\n");
        assert_eq!(cuts.ready(1).len(), 4);
    }

    #[test]
    fn streaming_envoy_in_pieces_gives_the_batch_output() {
        let app = format!(
            "{APP}# TYPE meshmetric_dp_fake gauge\nmeshmetric_dp_fake 1\n# TYPE envoy_cluster_upstream_rq_total counter\nenvoy_cluster_upstream_rq_total{{app=\"1\"}} 7\n# TYPE only_app gauge\nonly_app{{mesh=\"x\"}} 2\n"
        );
        let extra = ExtraLabels::new([("mesh", "default"), ("kuma.workload", "web")]);
        for profiles in [None, Some(all_profiles())] {
            let filter = FamilyFilter::new(profiles.as_ref()).unwrap();
            let (want, want_stats) = batched(ENVOY, &app, &filter, &extra);
            let want = String::from_utf8(want).unwrap();
            for step in 1..=ENVOY.len() + 1 {
                let (got, stats) = streamed(ENVOY, &app, &filter, &extra, step);
                assert_eq!(got, want, "pieces of {step} bytes");
                assert_eq!(stats, want_stats, "pieces of {step} bytes");
            }
        }
        // a larger, Envoy-shaped text (HELP lines, histograms, an empty line, internal
        // clusters) in pieces of many sizes
        for with_help in [false, true] {
            let mut big = String::new();
            for f in 0..40 {
                if with_help {
                    big.push_str(&format!("# HELP envoy_cluster_f{f}_total Help {f}.\n"));
                }
                big.push_str(&format!("# TYPE envoy_cluster_f{f}_total counter\n"));
                for c in 0..30 {
                    let name = if c % 10 == 0 {
                        "ads_cluster".to_string()
                    } else {
                        format!("service_{c}")
                    };
                    big.push_str(&format!(
                        "envoy_cluster_f{f}_total{{envoy_cluster_name=\"{name}\"}} {c}\n"
                    ));
                }
                if f % 7 == 0 {
                    big.push('\n');
                }
            }
            big.push_str("# TYPE envoy_cluster_upstream_rq_time histogram\n");
            for c in 0..30 {
                for le in ["1", "10", "+Inf"] {
                    big.push_str(&format!(
                        "envoy_cluster_upstream_rq_time_bucket{{envoy_cluster_name=\"service_{c}\",le=\"{le}\"}} 3\n"
                    ));
                }
                big.push_str(&format!("envoy_cluster_upstream_rq_time_sum{{envoy_cluster_name=\"service_{c}\"}} 4.5\nenvoy_cluster_upstream_rq_time_count{{envoy_cluster_name=\"service_{c}\"}} 3\n"));
            }
            big.push_str(ENVOY);
            for profiles in [None, Some(all_profiles())] {
                let filter = FamilyFilter::new(profiles.as_ref()).unwrap();
                let (want, want_stats) = batched(&big, &app, &filter, &extra);
                for step in [1, 2, 3, 17, 64, 100, 999, 4096, big.len()] {
                    let (got, stats) = streamed(&big, &app, &filter, &extra, step);
                    assert!(got.as_bytes() == &want[..], "pieces of {step} bytes");
                    assert_eq!(stats, want_stats, "pieces of {step} bytes");
                }
            }
        }
        // Envoy failing half way leaves what the other sources give alone
        let filter = FamilyFilter::new(None).unwrap();
        let mut st = ParseStats::default();
        let a = parse(&app, Format::Text, &mut st);
        let e = parse(ENVOY, Format::Text, &mut st);
        let others = [(Origin::Application, a.as_slice())];
        let mut out = Vec::new();
        let mut m = StreamMerge::new(&others, &filter, &extra, 0);
        m.envoy(&e[..2], &mut out);
        assert!(!out.is_empty());
        m.envoy_failed(&mut out);
        let stats = m.finish(&mut out);
        let mut alone = Vec::new();
        let mut alone_stats = MergeStats::default();
        merge_encode(
            &[(Origin::Application, &a)],
            &filter,
            &extra,
            &mut alone,
            &mut alone_stats,
        );
        assert_eq!(out, alone);
        assert_eq!(stats, alone_stats);
    }

    #[test]
    fn all_keeps_internal_and_exclude_drops() {
        let p = Profiles {
            append_profiles: Some(vec![Profile {
                name: Some(meshmetric_policies::meshmetric::ProfileName::All),
            }]),
            include: None,
            exclude: Some(vec![Selector {
                kind: Some(meshmetric_policies::meshmetric::SelectorType::Regex),
                pattern: "version$".into(),
            }]),
        };
        let (out, _) = run(ENVOY, "", Some(p));
        assert!(out.contains("envoy_cluster_name=\"ads_cluster\""));
        assert!(out.contains("envoy_http_conn_manager_prefix=\"admin\""));
        assert!(!out.contains("envoy_cluster_version"));
    }

    #[test]
    fn output_parses_back_identically() {
        let (out, _) = run(ENVOY, APP, None);
        let mut st = ParseStats::default();
        let fams = parse(&out, Format::Text, &mut st);
        assert_eq!(st, ParseStats::default());
        let mut again = Vec::new();
        let mut ms = MergeStats::default();
        let filter = FamilyFilter::new(Some(&all_profiles())).unwrap();
        merge_encode(
            &[(Origin::Application, &fams)],
            &filter,
            &ExtraLabels::default(),
            &mut again,
            &mut ms,
        );
        assert_eq!(String::from_utf8(again).unwrap(), out);
    }
}
