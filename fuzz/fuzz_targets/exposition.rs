//! The exposition parser on arbitrary input (both formats): it never panics, the limits never
//! panic, and what it accepted encodes into text that parses back to the same samples and
//! encodes to the same bytes (a fixed point after one round).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshmetric_dp::limits::{SeriesLimits, enforce_limits};
use meshmetric_dp::merge::{ExtraLabels, MergeStats, Origin, merge_encode};
use meshmetric_dp::parse::{Format, ParseStats, parse};
use meshmetric_policies::profiles::FamilyFilter;

fn encode(text: &str, format: Format, filter: &FamilyFilter, extra: &ExtraLabels) -> (Vec<u8>, usize) {
    let mut st = ParseStats::default();
    let fams = parse(text, format, &mut st);
    let samples = fams.iter().map(|f| f.samples.len()).sum();
    for f in &fams {
        for s in &f.samples {
            let _ = s.value();
        }
    }
    let mut out = Vec::new();
    let mut ms = MergeStats::default();
    merge_encode(
        &[(Origin::Application, fams.as_slice())],
        filter,
        extra,
        &mut out,
        &mut ms,
    );
    (out, samples)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let filter = FamilyFilter::new(None).expect("no profiles");
    let extra = ExtraLabels::new([("mesh", "default"), ("dataplane", "web-01")]);
    let none = ExtraLabels::default();
    for format in [Format::Text, Format::OpenMetrics] {
        let mut st = ParseStats::default();
        let mut fams = parse(text, format, &mut st);
        let limits = SeriesLimits {
            max_series: 3,
            max_label_value_bytes: 8,
            max_label_name_bytes: 8,
            max_metric_name_bytes: 16,
            max_labels: 4,
        };
        let _ = enforce_limits(&mut fams, &limits);
        // with extra labels (renaming clashes to exported_*): must not panic
        let _ = encode(text, format, &filter, &extra);

        // without: the encoding is a fixed point after one round
        let (first, _) = encode(text, format, &filter, &none);
        let first = std::str::from_utf8(&first).expect("encoder writes UTF-8");
        let (second, n1) = encode(first, Format::Text, &filter, &none);
        let second_text = std::str::from_utf8(&second).expect("encoder writes UTF-8");
        let (third, n2) = encode(second_text, Format::Text, &filter, &none);
        assert_eq!(n1, n2, "sample count changed on re-parse");
        assert_eq!(second, third, "encoding is not a fixed point");
    }
});
