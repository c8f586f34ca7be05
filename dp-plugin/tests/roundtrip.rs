//! Property: for any well-formed exposition text, parse → encode → parse gives the same
//! families and samples, and encoding again gives the same bytes (label escapes, NaN/±Inf,
//! timestamps, empty label sets included).

use meshmetric_dp::merge::{ExtraLabels, MergeStats, Origin, merge_encode};
use meshmetric_dp::parse::{Format, ParseStats, parse};
use meshmetric_policies::meshmetric::{Profile, Profiles};
use meshmetric_policies::profiles::FamilyFilter;
use proptest::prelude::*;

fn label_value() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("a".to_string()),
            Just("\\\\".to_string()),
            Just("\\\"".to_string()),
            Just("\\n".to_string()),
            Just("}".to_string()),
            Just(",".to_string()),
            Just(" ".to_string()),
            Just("é".to_string())
        ],
        0..6,
    )
    .prop_map(|v| v.concat())
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u32>().prop_map(|v| v.to_string()),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(|v| v.to_string()),
        Just("NaN".to_string()),
        Just("nan".to_string()),
        Just("+Inf".to_string()),
        Just("-Inf".to_string()),
        Just("1e-3".to_string()),
    ]
}

fn sample(name: String) -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(("[a-z_][a-z0-9_]{0,5}", label_value()), 0..3),
        value(),
        proptest::option::of(0i64..2_000_000_000_000),
    )
        .prop_map(move |(labels, v, ts)| {
            let mut seen = std::collections::HashSet::new();
            let l: Vec<String> = labels
                .into_iter()
                .filter(|(k, _)| seen.insert(k.clone()))
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            let ts = ts.map(|t| format!(" {t}")).unwrap_or_default();
            format!("{name}{{{}}} {v}{ts}\n", l.join(","))
        })
}

fn family() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9_]{0,8}",
        prop_oneof![Just("counter"), Just("gauge"), Just("untyped")],
        1usize..4,
    )
        .prop_flat_map(|(name, kind, n)| {
            let name = format!("m_{name}");
            proptest::collection::vec(sample(name.clone()), n..=n)
                .prop_map(move |samples| format!("# TYPE {name} {kind}\n{}", samples.concat()))
        })
}

fn encode(text: &str) -> String {
    let fams = parse(text, Format::Text, &mut ParseStats::default());
    let filter = FamilyFilter::new(Some(&Profiles {
        append_profiles: Some(vec![Profile {
            name: Some(meshmetric_policies::meshmetric::ProfileName::All),
        }]),
        ..Default::default()
    }))
    .unwrap();
    let mut out = Vec::new();
    merge_encode(
        &[(Origin::Application, &fams)],
        &filter,
        &ExtraLabels::default(),
        &mut out,
        &mut MergeStats::default(),
    );
    String::from_utf8(out).unwrap()
}

/// A sample as compared: (name, raw labels, raw value, timestamp).
type SampleShape = (String, String, String, Option<i64>);
/// A family as compared: (name, type, samples).
type FamilyShape = (String, meshmetric_dp::parse::MetricType, Vec<SampleShape>);

proptest! {
    #[test]
    fn parse_encode_parse_is_stable(families in proptest::collection::vec(family(), 1..5)) {
        let text = families.concat();
        let mut st = ParseStats::default();
        let first = parse(&text, Format::Text, &mut st);
        prop_assert_eq!(st.bad_lines, 0, "generated text must parse: {}", text);
        let once = encode(&text);
        let mut st2 = ParseStats::default();
        let second = parse(&once, Format::Text, &mut st2);
        prop_assert_eq!(st2.bad_lines, 0);
        let shape = |f: &Vec<meshmetric_dp::parse::Family<'_>>| f.iter().map(|f| (f.name.to_string(), f.kind, f.samples.iter().map(|s| (s.name.to_string(), s.labels.to_string(), s.raw_value.to_string(), s.timestamp_ms)).collect::<Vec<_>>())).collect::<Vec<_>>();
        // families with the same name merge into one, so compare per name
        let mut a = shape(&first);
        let mut b = shape(&second);
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        let merge = |v: Vec<FamilyShape>| {
            let mut m: Vec<(String, Vec<SampleShape>)> = Vec::new();
            for (n, _, s) in v {
                match m.last_mut() {
                    Some((ln, ls)) if *ln == n => ls.extend(s),
                    _ => m.push((n, s)),
                }
            }
            m
        };
        let (ma, mb) = (merge(a), merge(b));
        // a later family with a conflicting type is dropped by the merger: compare what survived
        for (name, samples) in &mb {
            let orig = ma.iter().find(|(n, _)| n == name).expect("family kept");
            for s in samples {
                prop_assert!(orig.1.contains(s), "sample {:?} changed", s);
            }
        }
        prop_assert_eq!(encode(&once), once.clone(), "encoding is idempotent");
    }
}
