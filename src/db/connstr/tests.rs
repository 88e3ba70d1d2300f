use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(s: &str) -> ConnStr {
    ConnStr::parse_with_env(s, no_env).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str) -> String {
    ConnStr::parse_with_env(s, no_env).expect_err(s).to_string()
}

fn ep(host: &str, port: Option<u16>) -> Endpoint {
    Endpoint {
        host: host.to_owned(),
        port,
    }
}

#[test]
fn the_multi_host_url_of_issue_21_parses() {
    let c = parse(
        "postgresql://u@127.0.0.1:57201,127.0.0.1:57202/postgres?target_session_attrs=read-write",
    );
    assert_eq!(
        c.endpoints,
        vec![ep("127.0.0.1", Some(57201)), ep("127.0.0.1", Some(57202))]
    );
    assert_eq!(c.target, SessionAttrs::ReadWrite);
    let o = c.options_for(1).unwrap();
    assert_eq!(o.get_host(), "127.0.0.1");
    assert_eq!(o.get_port(), 57202);
    assert_eq!(o.get_username(), "u");
    assert_eq!(o.get_database(), Some("postgres"));
}

#[test]
fn keyword_strings_parse_with_port_lists_and_quotes() {
    let c = parse(
        "host=a,b port=5432,5433 dbname=jobs user=ord password='p w' target_session_attrs=primary sslmode=disable",
    );
    assert_eq!(c.endpoints, vec![ep("a", Some(5432)), ep("b", Some(5433))]);
    assert_eq!(c.target, SessionAttrs::Primary);
    let c = parse(r"host = /tmp dbname='my db' password='a \' b'");
    assert_eq!(c.endpoints, vec![ep("/tmp", None)]);
    let o = c.options_for(0).unwrap();
    assert_eq!(o.get_database(), Some("my db"));
    assert_eq!(
        o.get_socket().map(|p| p.to_string_lossy().into_owned()),
        Some("/tmp".into())
    );
    // One port for every host.
    let c = parse("host=a,b,c port=6000");
    assert!(c.endpoints.iter().all(|e| e.port == Some(6000)));
}

#[test]
fn urls_take_ipv6_percent_encoding_and_query_hosts() {
    let c = parse("postgres://u:p%40ss@[::1]:5433,db.example:5434/d%20b?sslmode=disable");
    assert_eq!(
        c.endpoints,
        vec![ep("::1", Some(5433)), ep("db.example", Some(5434))]
    );
    let o = c.options_for(0).unwrap();
    assert_eq!(o.get_database(), Some("d b"));
    let c = parse("postgresql:///jobs?host=h1,h2&port=1,2&target_session_attrs=read-only");
    assert_eq!(c.endpoints, vec![ep("h1", Some(1)), ep("h2", Some(2))]);
    assert_eq!(c.target, SessionAttrs::ReadOnly);
    // A single ordinary URL keeps working.
    let c = parse("postgres://postgres@127.0.0.1:5432/postgres");
    assert_eq!(c.endpoints, vec![ep("127.0.0.1", Some(5432))]);
    assert_eq!(c.target, SessionAttrs::Any);
}

#[test]
fn the_environment_fills_what_the_string_leaves_out() {
    let env = |k: &str| match k {
        "PGHOST" => Some("x,y".to_owned()),
        "PGPORT" => Some("7000".to_owned()),
        "PGTARGETSESSIONATTRS" => Some("read-write".to_owned()),
        _ => None,
    };
    let c = ConnStr::parse_with_env("dbname=d", env).unwrap();
    assert_eq!(c.endpoints, vec![ep("x", Some(7000)), ep("y", Some(7000))]);
    assert_eq!(c.target, SessionAttrs::ReadWrite);
    // The string wins over the environment.
    let c = ConnStr::parse_with_env("host=z target_session_attrs=any", env).unwrap();
    assert_eq!(c.endpoints, vec![ep("z", Some(7000))]);
    assert_eq!(c.target, SessionAttrs::Any);
    let bad_env = |k: &str| (k == "PGTARGETSESSIONATTRS").then(|| "rw".to_owned());
    let e = ConnStr::parse_with_env("host=a", bad_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("PGTARGETSESSIONATTRS") && e.contains("\"rw\""),
        "{e}"
    );
}

#[test]
fn errors_name_the_bad_part_and_never_the_password() {
    // (connection string, what its error must name, the password it must not show)
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        (
            "postgresql://u:secret@h1:5432,h2:54x2/db",
            &["\"54x2\"", "host 2"],
            Some("secret"),
        ),
        (
            "postgresql://u:secret@h1/db?target_session_attrs=master",
            &["target_session_attrs \"master\""],
            Some("secret"),
        ),
        (
            "host=a,b,c port=1,2 password=secret",
            &["2 ports given for 3 hosts"],
            Some("secret"),
        ),
        (
            "host=a password='secret",
            &["unterminated quoted value for \"password\""],
            Some("secret"),
        ),
        (
            "postgresql://u:sec%zzret@h/db",
            &["percent-encoding in the password"],
            Some("sec"),
        ),
        ("mysql://u@h/db", &["\"mysql\""], None),
        (
            "just-a-word",
            &["missing \"=\" after \"just-a-word\""],
            None,
        ),
        ("postgresql://u@[::1/db", &["invalid host entry"], None),
    ];
    for &(given, named, password) in cases {
        let e = err(given);
        for part in named {
            assert!(e.contains(part), "{given}: {e}");
        }
        if let Some(password) = password {
            assert!(!e.contains(password), "{given}: {e}");
        }
    }
}

#[test]
fn redacted_shows_hosts_but_not_the_password() {
    let c =
        parse("host=a,b port=1,2 user=u password=secret dbname=d target_session_attrs=read-write");
    let shown = c.redacted();
    assert_eq!(
        shown,
        "postgresql://u:***@a:1,b:2/d?target_session_attrs=read-write"
    );
    assert!(!format!("{c:?}").contains("secret"));
}

#[test]
fn redact_hides_passwords_in_the_user_part_and_the_query() {
    // The redacted form is the parsed string written back (scheme `postgresql://`).
    assert_eq!(
        parse("postgres://app:hunter2@db:5432/jobs").redacted(),
        "postgresql://app:***@db:5432/jobs"
    );
    let shown =
        parse("postgres://app@db/jobs?sslmode=require&password=hunter2&sslpassword=k3y").redacted();
    assert!(
        !shown.contains("hunter2") && !shown.contains("k3y"),
        "{shown}"
    );
    assert!(shown.contains("app:***@db"), "{shown}");
    let plain = parse("postgres://db/jobs?sslmode=disable").redacted();
    assert!(plain.contains("db/jobs"), "{plain}");
    assert!(!plain.contains("***"), "{plain}");
}

#[test]
fn attributes_accept_the_servers_libpq_would() {
    use SessionAttrs::*;
    // (in_recovery, read_only)
    assert!(ReadWrite.accepts(false, false));
    assert!(!ReadWrite.accepts(false, true));
    assert!(!ReadWrite.accepts(true, true));
    assert!(Primary.accepts(false, true));
    assert!(!Primary.accepts(true, true));
    assert!(Standby.accepts(true, true));
    assert!(ReadOnly.accepts(false, true));
    assert!(Any.accepts(true, true));
}
