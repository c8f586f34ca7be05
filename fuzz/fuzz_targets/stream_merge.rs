//! Envoy's body merged while it arrives, on arbitrary input: never panics, gives the same
//! output whatever the size of the pieces the body arrives in, and — when the text lists each
//! family once, as Envoy does — the same output and counters as the batch merge.
//! Input: first byte = piece size; the rest = Envoy's text, then `\0`, then an application's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshmetric_dp::merge::{ExtraLabels, FamilyCuts, MergeStats, Origin, StreamMerge, merge_encode};
use meshmetric_dp::parse::{Format, ParseStats, parse};
use meshmetric_policies::profiles::FamilyFilter;

fn streamed(envoy: &str, others: &[(Origin, &[meshmetric_dp::parse::Family<'_>])], filter: &FamilyFilter, extra: &ExtraLabels, step: usize) -> (Vec<u8>, MergeStats) {
    let mut out = Vec::new();
    let mut m = StreamMerge::new(others, filter, extra, 0);
    let mut cuts = FamilyCuts::default();
    let mut st = ParseStats::default();
    for piece in envoy.as_bytes().chunks(step) {
        cuts.push(piece);
        let ready = cuts.ready(1);
        if !ready.is_empty() {
            let text = std::str::from_utf8(ready).expect("cut at a line start");
            m.envoy(&parse(text, Format::Text, &mut st), &mut out);
            let n = ready.len();
            cuts.take(n);
        }
    }
    let text = std::str::from_utf8(cuts.rest()).expect("whole text");
    m.envoy(&parse(text, Format::Text, &mut st), &mut out);
    let stats = m.finish(&mut out);
    (out, stats)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (envoy, app) = text.split_once('\0').unwrap_or((text, ""));
    let filter = FamilyFilter::new(None).expect("no profiles");
    let extra = ExtraLabels::new([("mesh", "default")]);
    let mut st = ParseStats::default();
    let a = parse(app, Format::Text, &mut st);
    let others = [(Origin::Application, a.as_slice())];
    let (one, one_stats) = streamed(envoy, &others, &filter, &extra, usize::from(step).max(1));
    let (whole, whole_stats) = streamed(envoy, &others, &filter, &extra, envoy.len().max(1));
    let e = parse(envoy, Format::Text, &mut st);
    let mut names: Vec<&str> = e.iter().map(|f| f.name.as_ref()).collect();
    names.sort_unstable();
    let unique = names.windows(2).all(|w| w[0] != w[1]);
    if unique {
        assert_eq!(one, whole, "pieces of {step} bytes");
        assert_eq!(one_stats, whole_stats);
        let mut batch = Vec::new();
        let mut batch_stats = MergeStats::default();
        merge_encode(&[(Origin::Envoy, &e), (Origin::Application, &a)], &filter, &extra, &mut batch, &mut batch_stats);
        assert!(one == batch, "streamed and batch differ");
        assert_eq!(one_stats, batch_stats);
    }
});
