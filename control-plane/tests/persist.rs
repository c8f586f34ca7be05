//! The SQLite store: what is written survives reopening; a second handle on the same file
//! (another process) sees the change on its next sync; invalid addresses are named.

use std::sync::Arc;

use meshmetric_control_plane::persist::{Persistence, redact};
use meshmetric_control_plane::store::Store;
use meshmetric_policies::ResourceKind as Kind;
use meshmetric_policies::parse_documents;

const DOCS: &str = "type: Dataplane\nname: web-01\nnetworking: {address: 10.0.0.1, inbound: [{port: 8080}]}\n---\ntype: MeshMetric\nname: m\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: 5670}}]}}\n";

fn db_path(tag: &str) -> String {
    let d = std::env::temp_dir().join(format!("mm-persist-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    format!("sqlite:{}", d.join("store.db").display())
}

#[tokio::test]
async fn written_resources_survive_reopening_and_reach_other_handles() {
    let at = db_path("reopen");
    let db = Persistence::open(&at).await.unwrap();
    let store = Store::default();
    store
        .commit_apply(Some(&db), parse_documents(DOCS).unwrap())
        .await
        .unwrap();
    let other = Arc::new(Persistence::open(&at).await.unwrap());
    let other_store = Arc::new(Store::default());
    assert_eq!(other.load_into(&other_store).await.unwrap(), 2);
    assert_eq!(other_store.meshmetric("default", "m"), store.meshmetric("default", "m"));
    assert_eq!(
        other_store.dataplane("default", "web-01"),
        store.dataplane("default", "web-01")
    );
    assert!(!other.sync(&other_store, None).await.unwrap(), "nothing new");

    // a delete through the first handle reaches the second on sync, and notifies its watchers
    let mut changes = other_store.subscribe();
    changes.mark_unchanged();
    assert!(
        store
            .commit_delete(Some(&db), Kind::MeshMetric, "default", "m")
            .await
            .unwrap()
    );
    assert!(other.sync(&other_store, None).await.unwrap());
    assert!(other_store.meshmetric("default", "m").is_none());
    assert!(changes.has_changed().unwrap());
    // the writer does not reload its own write
    assert!(!db.sync(&store, None).await.unwrap());
    drop(db);
    drop(other);

    let reopened = Persistence::open(&at).await.unwrap();
    let s = Store::default();
    assert_eq!(reopened.load_into(&s).await.unwrap(), 1);
    assert!(s.dataplane("default", "web-01").is_some());
}

#[tokio::test]
async fn bad_addresses_are_named_and_passwords_redacted() {
    let e = match Persistence::open("mysql://u:pw@h/db").await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    assert!(
        e.contains("sqlite:<file>") && e.contains("postgres://") && !e.contains("pw@"),
        "{e}"
    );
    assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
    assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    let e = match Persistence::open("postgres://u:secret@127.0.0.1:1/db").await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("connected to port 1"),
    };
    assert!(e.contains("could not be opened") && !e.contains("secret"), "{e}");
}

#[test]
fn every_password_form_is_redacted() {
    for (address, shown) in [
        ("postgres://u:s3cret@h:5432/db", "postgres://u:***@h:5432/db"),
        ("postgres://u@h/db?password=s3cret", "postgres://u@h/db?password=***"),
        (
            "postgresql://h/db?user=u&password=s3cret&sslmode=verify-full&sslpassword=k3y",
            "postgresql://h/db?user=u&password=***&sslmode=verify-full&sslpassword=***",
        ),
        ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
    ] {
        assert_eq!(redact(address), shown);
    }
}

#[test]
fn tls_is_verified_by_default_off_the_host() {
    use meshmetric_control_plane::persist::pg_options;
    use sqlx::postgres::PgSslMode;
    // PGSSLMODE would count as an explicit choice; the test environment does not set it
    assert!(std::env::var_os("PGSSLMODE").is_none());
    let mode = |a: &str| pg_options(a).unwrap().get_ssl_mode();
    assert!(matches!(mode("postgres://u@db.example:5432/m"), PgSslMode::VerifyFull));
    assert!(matches!(mode("postgres://u@10.0.0.5/m"), PgSslMode::VerifyFull));
    // loopback and unix sockets keep libpq's default
    assert!(matches!(mode("postgres://u@127.0.0.1/m"), PgSslMode::Prefer));
    assert!(matches!(mode("postgres://u@localhost/m"), PgSslMode::Prefer));
    assert!(matches!(mode("postgres://u@[::1]/m"), PgSslMode::Prefer));
    assert!(matches!(
        mode("postgres://u@%2Fvar%2Frun%2Fpostgresql/m"),
        PgSslMode::Prefer
    ));
    // an explicit sslmode is honoured
    assert!(matches!(
        mode("postgres://u@db.example/m?sslmode=require"),
        PgSslMode::Require
    ));
    assert!(matches!(
        mode("postgres://u@db.example/m?sslmode=disable"),
        PgSslMode::Disable
    ));
}
