//! Access control of the REST API: with a token file, writes need the token; reads need it
//! unless anonymous reads are allowed; the token never appears in logs or responses.

use std::process::Command;

use meshmetric_tests::*;

const TOKEN: &str = "tok-3f9a1c7e5b2d4a60";
const POLICY: &str =
    "type: MeshMetric\nname: m\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: 5670}}]}}\n";

fn put(api: &str, token: Option<&str>) -> u16 {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut s = std::net::TcpStream::connect(api).unwrap();
    use std::io::{Read, Write};
    write!(s, "PUT /meshes/default/meshmetrics/m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{POLICY}", POLICY.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn e2e_api_token_guards_writes_and_optionally_reads() {
    let dir = workdir("access");
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let tf = token_file.to_str().unwrap();

    // token required for everything but /ready
    let cp = ControlPlane::start(&dir, None, &["--api-token-file", tf]);
    assert_eq!(put(&cp.api, None), 401);
    assert_eq!(put(&cp.api, Some("wrong-token-0000000")), 401);
    assert_eq!(
        http("GET", &cp.api, "/meshes/default/meshmetrics", None).unwrap().0,
        401
    );
    assert_eq!(put(&cp.api, Some(TOKEN)), 201);
    let ctl = |args: &[&str]| {
        Command::new(bin("meshmetricctl"))
            .args(["--cp", &format!("http://{}", cp.api)])
            .args(args)
            .output()
            .unwrap()
    };
    let out = ctl(&["get", "meshmetrics"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    let out = ctl(&["--token-file", tf, "get", "meshmetrics"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("m "),
        "{out:?}"
    );
    let log = cp.proc.log_text();
    assert!(
        log.contains("API request refused") && !log.contains(TOKEN),
        "refusals are logged, the token never:\n{log}"
    );
    drop(cp);

    // anonymous reads, when configured
    let dir2 = workdir("access2");
    let cp = ControlPlane::start(&dir2, None, &["--api-token-file", tf, "--anonymous-reads"]);
    assert_eq!(
        http("GET", &cp.api, "/meshes/default/meshmetrics", None).unwrap().0,
        200
    );
    assert_eq!(put(&cp.api, None), 401);
    // a token shorter than 16 characters is refused at start
    std::fs::write(dir.join("short"), "abc").unwrap();
    let out = Command::new(bin("meshmetric-cp"))
        .args([
            "--api-token-file",
            dir.join("short").to_str().unwrap(),
            "--store",
            "memory",
            "--data-dir",
            dir.join("short-data").to_str().unwrap(),
            "--api-address",
            "127.0.0.1:0",
            "--xds-address",
            "127.0.0.1:0",
            "--mads-address",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("shorter than 16"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn e2e_api_writes_need_a_token_by_default() {
    use std::os::unix::fs::PermissionsExt;
    let dir = workdir("access-default");
    // no --api-token-file: the control plane generates one in its data directory
    let cp = ControlPlane::start(&dir, None, &[]);
    let meta = std::fs::metadata(&cp.token_file).expect("generated token file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "token file is private");
    assert_eq!(
        std::fs::metadata(dir.join("cp-data")).unwrap().permissions().mode() & 0o777,
        0o700,
        "data directory is private"
    );
    assert_eq!(cp.token.len(), 64, "32 random bytes, hex");
    assert_eq!(put(&cp.api, None), 401, "writes need the token");
    assert_eq!(
        http("GET", &cp.api, "/meshes/default/meshmetrics", None).unwrap().0,
        401,
        "reads too, unless --anonymous-reads"
    );
    assert_eq!(put(&cp.api, Some(&cp.token)), 201);
    let log = cp.proc.log_text();
    assert!(
        log.contains("generated an API token") && !log.contains(&cp.token),
        "the token file is named, its value never:\n{log}"
    );
    // the same token survives a restart (it is not regenerated)
    let token = cp.token.clone();
    drop(cp);
    let cp = ControlPlane::start(&dir, None, &[]);
    assert_eq!(cp.token, token);
    let _ = std::fs::remove_dir_all(&dir);
}
