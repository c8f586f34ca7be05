//! The plugin's hot path on real Envoy output recorded by `bench/record-envoy.sh`
//! (`.run/bench/envoy-{1,200,1000}.prom`): parse (MB/s), profile filtering (Basic; All with 50
//! regex excludes), merge + Prometheus text encoding, OTLP production + encoding.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

use meshmetric_dp::merge::{
    ExtraLabels, FamilyCuts, MergeStats, Origin, Relabeling, StreamMerge, merge_encode, merge_encode_relabeled,
};
use meshmetric_dp::otlp::producer::{Producer, Temporality};
use meshmetric_dp::parse::{Format, ParseStats, parse};
use meshmetric_policies::meshmetric::{Profile, ProfileName, Profiles, Selector, SelectorType};
use meshmetric_policies::profiles::FamilyFilter;
use meshmetric_policies::relabel::Rules;

/// The ten typical rules of `bench/relabel-rules.json` (also run by bench/compare.sh).
fn rules() -> Rules {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/relabel-rules.json");
    let cfgs: Vec<meshmetric_policies::meshmetric::RelabelConfig> =
        serde_json::from_str(&std::fs::read_to_string(p).expect("bench/relabel-rules.json")).expect("rules");
    Rules::compile(&cfgs).expect("rules compile")
}

/// The recording of `clusters`, or None (with a message) when `bench/record-envoy.sh` has not
/// recorded it.
fn recorded(clusters: usize) -> Option<String> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../.run/bench/envoy-{clusters}.prom"));
    let text = std::fs::read_to_string(&p).ok();
    if text.is_none() {
        eprintln!(
            "{} missing: run bench/record-envoy.sh {clusters} first; skipped",
            p.display()
        );
    }
    text
}

fn profiles(name: ProfileName, regex_excludes: usize) -> Profiles {
    Profiles {
        append_profiles: Some(vec![Profile { name: Some(name) }]),
        include: None,
        exclude: (regex_excludes > 0).then(|| {
            (0..regex_excludes)
                .map(|i| Selector {
                    kind: Some(SelectorType::Regex),
                    pattern: format!("envoy_cluster_.*_never_{i}(_total)?$"),
                })
                .collect()
        }),
    }
}

fn bench(c: &mut Criterion) {
    let extra = ExtraLabels::new([
        ("mesh", "default"),
        ("dataplane", "web-01"),
        ("kuma.workload", "web"),
        ("zone", "z1"),
    ]);
    let extra_map = [("mesh", "default"), ("dataplane", "web-01"), ("kuma.workload", "web")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for clusters in [1usize, 200, 1000] {
        let Some(text) = recorded(clusters) else { continue };
        let mut g = c.benchmark_group(format!("envoy_{clusters}_clusters"));
        g.sample_size(10);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function("parse", |b| {
            b.iter(|| parse(&text, Format::Text, &mut ParseStats::default()).len())
        });
        let fams = parse(&text, Format::Text, &mut ParseStats::default());
        for (label, p) in [
            ("merge_encode_all", profiles(ProfileName::All, 0)),
            ("merge_encode_basic", profiles(ProfileName::Basic, 0)),
            ("merge_encode_all_50_regex_excludes", profiles(ProfileName::All, 50)),
        ] {
            let filter = FamilyFilter::new(Some(&p)).unwrap();
            g.bench_function(label, |b| {
                b.iter(|| {
                    let mut out = Vec::with_capacity(text.len() + text.len() / 2);
                    merge_encode(
                        &[(Origin::Envoy, &fams)],
                        &filter,
                        &extra,
                        &mut out,
                        &mut MergeStats::default(),
                    );
                    out.len()
                })
            });
        }
        let all = FamilyFilter::new(Some(&profiles(ProfileName::All, 0))).unwrap();
        let ten = rules();
        // cold: every series runs the rules (the first collection of a config); cached: the
        // series were seen by an earlier collection (every later one)
        let cache = std::sync::Mutex::new(meshmetric_dp::merge::SeriesCache::default());
        for (label, cache) in [
            ("merge_encode_all_10_relabel_rules_cold", None),
            ("merge_encode_all_10_relabel_rules", Some(&cache)),
        ] {
            g.bench_function(label, |b| {
                b.iter(|| {
                    let mut out = Vec::with_capacity(text.len());
                    merge_encode_relabeled(
                        &[(Origin::Envoy, &fams)],
                        &all,
                        &extra,
                        Relabeling {
                            per_source: &[],
                            global: &ten,
                            cache,
                        },
                        &mut out,
                        &mut MergeStats::default(),
                    );
                    out.len()
                })
            });
        }
        // the same full cycle under both profiles, as the plugin runs it
        for (name, profile) in [
            ("full_cycle_basic", ProfileName::Basic),
            ("full_cycle_all", ProfileName::All),
        ] {
            let filter = FamilyFilter::new(Some(&profiles(profile, 0))).unwrap();
            g.bench_function(name, |b| {
                b.iter(|| {
                    let fams =
                        meshmetric_dp::parse::parse_filtered(&text, Format::Text, &mut ParseStats::default(), &|n| {
                            filter.keep_family(n)
                        });
                    let mut out = Vec::with_capacity(text.len());
                    merge_encode(
                        &[(Origin::Envoy, &fams)],
                        &filter,
                        &extra,
                        &mut out,
                        &mut MergeStats::default(),
                    );
                    out.len()
                })
            });
        }
        // the same cycle as the plugin runs it without relabeling rules: Envoy's body arriving in
        // 16 KiB frames, merged piece by piece (FamilyCuts + StreamMerge)
        for (name, profile) in [
            ("stream_cycle_basic", ProfileName::Basic),
            ("stream_cycle_all", ProfileName::All),
        ] {
            let filter = FamilyFilter::new(Some(&profiles(profile, 0))).unwrap();
            g.bench_function(name, |b| {
                b.iter(|| {
                    let mut out = Vec::with_capacity(text.len() + text.len() / 2);
                    let mut m = StreamMerge::new(&[], &filter, &extra, 0);
                    let mut cuts = FamilyCuts::with_capacity(1 << 19);
                    let mut st = ParseStats::default();
                    let keep = |n: &str| filter.keep_family(n);
                    let mut merge = |piece: &[u8], m: &mut StreamMerge<'_, '_>, out: &mut Vec<u8>| {
                        let piece = std::str::from_utf8(piece).unwrap();
                        m.envoy(
                            &meshmetric_dp::parse::parse_filtered(piece, Format::Text, &mut st, &keep),
                            out,
                        );
                    };
                    for frame in text.as_bytes().chunks(16 << 10) {
                        cuts.push(frame);
                        let ready = cuts.ready(256 << 10);
                        if !ready.is_empty() {
                            merge(ready, &mut m, &mut out);
                            let n = ready.len();
                            cuts.take(n);
                        }
                    }
                    merge(cuts.rest(), &mut m, &mut out);
                    m.finish(&mut out);
                    out.len()
                })
            });
        }
        let mut producer = Producer::new(Temporality::Cumulative, &extra_map);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        // typed request + prost (the reference form) and direct protobuf writing (exporters)
        g.bench_function("otlp_produce_encode_typed", |b| {
            b.iter(|| producer.produce(&text, now).0.encode_to_vec().len())
        });
        eprintln!(
            "{clusters} clusters: {} OTLP data points per collection",
            producer.produce_encoded(&text, now).1
        );
        g.bench_function("otlp_produce_encode", |b| {
            b.iter(|| producer.produce_encoded(&text, now).0.len())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
