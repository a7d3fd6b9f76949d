//! The real binary against a PostgreSQL server that speaks only TLS: `relais store copy`
//! to a `sslmode=verify-full` URL lands encrypted; a certificate from another CA is refused
//! with an error that says so and hides the password.

use relais::store::{BlockSource, Store};

use crate::common::{relais, stderr, stdout, tls_database};

#[test]
fn store_copy_over_verified_tls_and_refused_for_another_ca() {
    let Some(db) = tls_database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relais.db");
    Store::open(&file)
        .unwrap()
        .block_domain("spam.example", BlockSource::Moderation)
        .unwrap();
    let with_password = db.url.replace("postgres@", "postgres:s3cret@");
    let to = |ca: &std::path::Path| {
        format!(
            "{with_password}?sslmode=verify-full&sslrootcert={}",
            ca.display()
        )
    };

    let refused = relais(&[
        "store",
        "copy",
        "--from",
        file.to_str().unwrap(),
        "--to",
        &to(&db.other_ca),
    ]);
    let said = stderr(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("invalid peer certificate: UnknownIssuer"),
        "{said}"
    );
    assert!(said.contains("postgres:***@"), "{said}");
    assert!(!said.contains("s3cret"), "{said}");

    let verified = to(&db.ca);
    let copied = relais(&[
        "store",
        "copy",
        "--from",
        file.to_str().unwrap(),
        "--to",
        &verified,
    ]);
    assert!(copied.status.success(), "{}", stderr(&copied));
    assert!(
        stdout(&copied).contains("blocked_domains"),
        "{}",
        stdout(&copied)
    );
    let target = Store::connect(&verified).unwrap();
    assert_eq!(
        target.blocked_domains().unwrap(),
        vec![("spam.example".to_string(), BlockSource::Moderation)]
    );
}
