//! The binary's start-up refusals, seen from outside: exit status and message.

#[test]
fn non_loopback_listen_without_admin_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::cairn_command()
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run cairn");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin-token"), "{err}");
}
