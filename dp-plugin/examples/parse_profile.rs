//! Parses a recorded Envoy output many times (for `perf record`): `cargo run --release
//! --example parse_profile -- .run/bench/envoy-1000.prom 20`.
fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("file");
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(20);
    let text = std::fs::read_to_string(path).expect("read");
    let t = std::time::Instant::now();
    let mut samples = 0;
    for _ in 0..n {
        let f = meshmetric_dp::parse::parse(&text, meshmetric_dp::parse::Format::Text, &mut Default::default());
        samples += f.iter().map(|f| f.samples.len()).sum::<usize>();
    }
    let el = t.elapsed();
    println!(
        "{samples} samples, {:.1} MB/s",
        (text.len() * n) as f64 / el.as_secs_f64() / 1e6
    );
}
