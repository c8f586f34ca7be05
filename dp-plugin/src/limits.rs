//! Limits on what one application scrape may contribute, applied right after parsing: a
//! series is dropped (and counted by reason) when its metric name, a label name or a label
//! value is too long, it has too many labels or the same label name twice (Prometheus fails the
//! whole scrape on that), or it comes after the series limit. Envoy's own stats are not limited.

/// Limits on the series of one application scrape (0 disables a limit). Envoy's own stats are
/// not limited.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeriesLimits {
    /// Most series kept (the first ones in the body).
    pub max_series: usize,
    /// Longest label value, escaped, in bytes.
    pub max_label_value_bytes: usize,
    /// Longest label name, in bytes.
    pub max_label_name_bytes: usize,
    /// Longest metric name, in bytes.
    pub max_metric_name_bytes: usize,
    /// Most labels on one series.
    pub max_labels: usize,
}

/// Application series dropped by [`enforce_limits`], by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitStats {
    /// A label value over the limit.
    pub label_too_long: u64,
    /// A label name over the limit.
    pub label_name_too_long: u64,
    /// A metric name over the limit.
    pub metric_name_too_long: u64,
    /// More labels than the limit.
    pub too_many_labels: u64,
    /// The same label name twice (Prometheus would fail the whole scrape).
    pub duplicate_label_name: u64,
    /// Over the series limit.
    pub series_limit: u64,
}

impl LimitStats {
    /// Adds `o`'s counts.
    pub fn add(&mut self, o: &LimitStats) {
        self.label_too_long += o.label_too_long;
        self.label_name_too_long += o.label_name_too_long;
        self.metric_name_too_long += o.metric_name_too_long;
        self.too_many_labels += o.too_many_labels;
        self.duplicate_label_name += o.duplicate_label_name;
        self.series_limit += o.series_limit;
    }

    /// Series dropped in total.
    pub fn total(&self) -> u64 {
        self.label_too_long
            + self.label_name_too_long
            + self.metric_name_too_long
            + self.too_many_labels
            + self.duplicate_label_name
            + self.series_limit
    }
}

/// Whether a label list has the same name twice.
fn has_duplicate_name(names: &[&str]) -> bool {
    if names.len() <= 16 {
        return names.iter().enumerate().any(|(i, a)| names[..i].contains(a));
    }
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    !names.iter().all(|n| seen.insert(*n))
}

/// Applies `limits` to one application's families, in place. A series is dropped (and
/// counted by reason) when its metric name, a label name or a label value (escaped form) is
/// too long, it has too many labels or the same label name twice (Prometheus fails the whole
/// scrape on that); then only the first `max_series` series are kept. Families left without
/// samples are removed.
pub fn enforce_limits(families: &mut Vec<crate::parse::Family<'_>>, limits: &SeriesLimits) -> LimitStats {
    let mut st = LimitStats::default();
    let mut kept = 0usize;
    let over = |limit: usize, len: usize| limit > 0 && len > limit;
    let mut names: Vec<&str> = Vec::new();
    for f in families.iter_mut() {
        f.samples.retain(|s| {
            if over(limits.max_metric_name_bytes, s.name.len()) {
                st.metric_name_too_long += 1;
                return false;
            }
            if !s.labels.is_empty() {
                names.clear();
                let mut long_value = false;
                for (n, v) in crate::parse::labels(s.labels) {
                    long_value |= over(limits.max_label_value_bytes, v.len());
                    names.push(n);
                }
                let reason = if long_value {
                    Some(&mut st.label_too_long)
                } else if names.iter().any(|n| over(limits.max_label_name_bytes, n.len())) {
                    Some(&mut st.label_name_too_long)
                } else if over(limits.max_labels, names.len()) {
                    Some(&mut st.too_many_labels)
                } else if has_duplicate_name(&names) {
                    Some(&mut st.duplicate_label_name)
                } else {
                    None
                };
                if let Some(counter) = reason {
                    *counter += 1;
                    return false;
                }
            }
            if over(limits.max_series, kept + 1) {
                st.series_limit += 1;
                return false;
            }
            kept += 1;
            true
        });
    }
    families.retain(|f| !f.samples.is_empty());
    st
}

#[cfg(test)]
mod tests {
    use super::{LimitStats, SeriesLimits, enforce_limits};
    use crate::parse::{Format, ParseStats, parse};

    fn limits(max_series: usize, max_label_value_bytes: usize) -> SeriesLimits {
        SeriesLimits {
            max_series,
            max_label_value_bytes,
            ..Default::default()
        }
    }

    #[test]
    fn limits_drop_long_labels_then_keep_the_first_series() {
        let long = "y".repeat(40);
        let text = format!(
            "# TYPE a gauge\na{{k=\"1\"}} 1\na{{k=\"{long}\"}} 2\na{{k=\"3\"}} 3\n# TYPE b gauge\nb 4\nb{{k=\"5\"}} 5\n"
        );
        let mut st = ParseStats::default();
        let mut fams = parse(&text, Format::Text, &mut st);
        let d = enforce_limits(&mut fams, &limits(3, 16));
        assert_eq!((d.label_too_long, d.series_limit), (1, 1));
        let kept: Vec<&str> = fams
            .iter()
            .flat_map(|f| f.samples.iter().map(|s| s.raw_value))
            .collect();
        assert_eq!(kept, ["1", "3", "4"]);
        // a family emptied by the limit goes away; zero disables both limits
        let mut fams = parse(&text, Format::Text, &mut st);
        assert_eq!(enforce_limits(&mut fams, &limits(2, 0)).series_limit, 3);
        assert_eq!(fams.len(), 1);
        let mut fams = parse(&text, Format::Text, &mut st);
        assert_eq!(enforce_limits(&mut fams, &limits(0, 0)), LimitStats::default());
        assert_eq!(fams.iter().map(|f| f.samples.len()).sum::<usize>(), 5);
    }

    #[test]
    fn names_label_counts_and_duplicates() {
        let many: Vec<String> = (0..20).map(|i| format!("l{i}=\"v\"")).collect();
        let many_dup = format!("{},l3=\"w\"", many.join(","));
        let text = format!(
            "# TYPE a gauge\na{{k=\"1\",k=\"2\"}} 1\na{{{}=\"x\"}} 2\n{}{{k=\"1\"}} 3\na{{{}}} 4\na{{{many_dup}}} 5\na{{k=\"ok\",j=\"ok\"}} 6\n",
            "n".repeat(300),
            format_args!("a{}", "m".repeat(300)),
            many.join(",")
        );
        let mut st = ParseStats::default();
        let mut fams = parse(&text, Format::Text, &mut st);
        assert_eq!(st.bad_lines, 0, "{:?}", st.first_error);
        let l = SeriesLimits {
            max_label_name_bytes: 256,
            max_metric_name_bytes: 256,
            max_labels: 10,
            ..Default::default()
        };
        let d = enforce_limits(&mut fams, &l);
        assert_eq!(
            (
                d.duplicate_label_name,
                d.label_name_too_long,
                d.metric_name_too_long,
                d.too_many_labels
            ),
            (1, 1, 1, 2)
        );
        let kept: Vec<&str> = fams
            .iter()
            .flat_map(|f| f.samples.iter().map(|s| s.raw_value))
            .collect();
        assert_eq!(kept, ["6"]);
        // without the label-count limit, a long list with a repeated name is still caught
        let mut fams = parse(&text, Format::Text, &mut st);
        let d = enforce_limits(&mut fams, &SeriesLimits::default());
        assert_eq!(d.duplicate_label_name, 2);
    }
}
